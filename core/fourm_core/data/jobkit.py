"""Plumbing shared by the dataset jobs (ingest, label, tokenize): the per-modality report, the process group,
the writer lock of a job, the progress bar, the kill-point test hook and modality resolution.

The jobs log under one logger, ``fourm_core.data.jobs`` (:data:`log`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
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


class PlainProgress:
    """Progress for a log file: one plain line (no carriage return) at every ``step_fraction`` of ``total``, or
    every ``interval`` seconds if that comes first, and a last one on :meth:`close`. The tqdm methods the jobs
    use (``update``, ``set_postfix``, ``close``, ``with``) behave alike, so callers need not know which they got."""

    def __init__(self, total: int, desc: str, *, unit: str = "it", initial: int = 0, stream: Any = None,
                 step_fraction: float = 0.1, interval: float = 60.0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream = stream if stream is not None else sys.stderr
        self.step = max(1, math.ceil(total * step_fraction)) if total else 0
        self.interval = interval
        self._start = self._last_time = time.monotonic()
        self._start_n = self._shown = initial
        self._next = (initial // self.step + 1) * self.step if self.step else None
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if (self._next is not None and self.n >= self._next) or now - self._last_time >= self.interval:
            self._emit(now)

    def set_postfix(self, **values: Any) -> None:
        self._postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def _emit(self, now: float) -> None:
        if self._next is not None:
            self._next = (self.n // self.step + 1) * self.step
        self._last_time, self._shown = now, self.n
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total}" if self.total else ""
        line = f"{self.desc}: {self.n}{of} {self.unit}{share}, {rate:.3g} {self.unit}/s, {now - self._start:.0f} s"
        print(line + (f", {self._postfix}" if self._postfix else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._shown:
                self._emit(time.monotonic())  # the last state, unless the last line already showed it

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _NoProgress:
    """What a disabled progress bar is (other processes than 0, ``enabled=False``)."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True, *, unit: str = "sample", initial: int = 0,
                 stream: Any = None) -> Any:
    """The progress display of a job counting ``total`` units: a tqdm bar when ``stream`` (default stderr) is a
    terminal, else :class:`PlainProgress` lines (every 10 % or minute, no carriage returns: readable in a CI
    log or a file); nothing when not ``enabled`` (e.g. processes other than 0)."""
    if not enabled:
        return _NoProgress()
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=stream)
    return PlainProgress(total, desc, unit=unit, initial=initial, stream=stream)


def resolve_modalities(names: Sequence[str], registry: ModalitySet | None) -> list[ModalitySpec]:
    """The specs of ``names`` from ``registry`` (default: the installed plugins)."""
    mods = registry if registry is not None else get_modalities()
    if not names:
        raise StoreError("no modalities given; pass --modalities a,b (see `fourm modalities`)")
    return [mods[n] for n in names]
