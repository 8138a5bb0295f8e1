"""Plumbing shared by the dataset jobs (ingest, label, tokenize): the per-modality report, the process group,
the writer lock of a job, the progress bar, the kill-point test hook and modality resolution.

The jobs log under one logger, ``fourm_core.data.jobs`` (:data:`log`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from fourm_registry import ModalitySet, ModalitySpec, get_modalities

from .errors import StoreError

log = logging.getLogger("fourm_core.data.jobs")


@attrs.frozen(kw_only=True)
class JobReport:
    """What ``label`` / ``tokenize`` did for one modality on this process."""

    modality: str
    shards_done: int
    shards_skipped: int
    samples: int
    seconds: float


class Dist:
    """Rank / world size / barrier from Accelerate (a single process when not launched distributed)."""

    def __init__(self, device: str = "cpu"):
        from accelerate import PartialState

        cpu = device == "cpu"
        self.state = PartialState(cpu=cpu)
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        self.is_main = self.state.is_main_process

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()


@contextlib.contextmanager
def job_lock(url: str, dist: Dist, job: str, *, force: bool = False) -> Iterator[Any]:
    """Hold the store's writer lock for a job: process 0 takes it, then every process meets at a barrier and
    the others join it (one lock per job, however many processes write its shards). Released by process 0
    when the job ends, also on errors."""
    from .lock import WriterLock

    lock = WriterLock.acquire(url, job, force=force) if dist.is_main else None
    try:
        dist.barrier()
        if lock is None:
            lock = WriterLock.join(url)
        yield lock
    finally:
        if lock is not None:
            lock.release()


def kill_point(where: str) -> None:
    """Test hook: SIGKILL this process when the environment variable FOURM_TEST_KILL_AT equals ``where``
    (``"<job>:<modality>:<shard>"``, reached after the shard's data is written, before its done flag;
    ``"create:<array path>"``, between an array's completion records and the array); the crash tests use it to
    interrupt a job at an exact point."""
    if os.environ.get("FOURM_TEST_KILL_AT") == where:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar counting samples (disabled, e.g. on processes other than 0, when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, dynamic_ncols=True)


def resolve_modalities(names: Sequence[str], registry: ModalitySet | None) -> list[ModalitySpec]:
    """The specs of ``names`` from ``registry`` (default: the installed plugins)."""
    mods = registry if registry is not None else get_modalities()
    if not names:
        raise StoreError("no modalities given; pass --modalities a,b (see `fourm modalities`)")
    return [mods[n] for n in names]
