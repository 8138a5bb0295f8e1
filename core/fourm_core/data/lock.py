"""The writer lock of a store: one writing job at a time, with a clear error naming the holder.

Every job that writes (``fourm ingest``, ``label``, ``tokenize``, ``inspect --repair``) holds the lock: the
group ``_lock`` of the store, whose ``zarr.json`` carries the attribute ``fourm_writer_lock`` = ``{job,
job_id, host, pid, started, proc_start}`` (a group, so that zarr tools list it as part of the hierarchy). Its
``zarr.json`` is created exclusively (``set_if_not_exists`` of the zarr store: an exclusive create on local
stores; best effort on object stores, which have no exclusive create), and the group is deleted when the job
ends.

* A second job fails with :class:`StoreLockedError` naming the holder's command, host, pid and start time.
* A lock is *stale* when its holder ran on this host and that process is gone (or its pid now belongs to a
  process started later); a stale lock is taken over with a warning (a job killed with ``kill -9`` leaves one).
* ``force=True`` (``--force``) takes over any lock, e.g. one left on a shared file system by a machine that
  died. Only use it when no other job writes the store.
* Processes of one distributed job share the lock: process 0 takes it before creating arrays, the others
  :meth:`WriterLock.join` it after the job's first barrier (they check it exists and adopt its ``job_id``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .errors import StoreError
from .shards import zarr_store

log = logging.getLogger(__name__)

LOCK_GROUP = "_lock"
LOCK_KEY = f"{LOCK_GROUP}/zarr.json"


class StoreLockedError(StoreError):
    """Another job holds the writer lock of the store."""


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(info: dict[str, Any]) -> bool | None:
    """Whether the holder process still runs: True / False on this host, None on another host."""
    if info.get("host") != socket.gethostname():
        return None
    pid = int(info.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):
        return False
    start = info.get("proc_start")
    return not (start is not None and _proc_start(pid) not in (None, start))


def describe(info: dict[str, Any]) -> str:
    return (f"`{info.get('job', '?')}` (job {str(info.get('job_id', '?'))[:8]}, host {info.get('host', '?')}, "
            f"pid {info.get('pid', '?')}, since {info.get('started', '?')})")


class WriterLock:
    """The lock of one store held (or joined) by this process; a context manager that releases it."""

    def __init__(self, url: str, zstore: Any, info: dict[str, Any], owner: bool):
        self.url, self._zstore, self.info, self.owner = url, zstore, info, owner

    @property
    def job_id(self) -> str:
        return str(self.info["job_id"])

    @staticmethod
    def _open(url: str) -> Any:
        return zarr_store(os.fspath(url), "r+", None)

    @staticmethod
    def _read(zstore: Any) -> dict[str, Any] | None:
        buf = sync(zstore.get(LOCK_KEY, prototype=default_buffer_prototype()))
        if buf is None:
            return None
        try:
            info = json.loads(buf.to_bytes().decode("utf-8"))["attributes"]["fourm_writer_lock"]
            if isinstance(info, dict):
                return info
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            pass
        return {"job": "unreadable lock", "job_id": "?", "torn": True}

    @staticmethod
    def _delete(zstore: Any) -> None:
        sync(zstore.delete_dir(LOCK_GROUP))

    @classmethod
    def holder(cls, url: str) -> dict[str, Any] | None:
        """The lock's content, None when the store is not locked."""
        try:
            return cls._read(cls._open(url))
        except StoreError:
            return None

    @classmethod
    def acquire(cls, url: str, job: str, *, force: bool = False) -> WriterLock:
        """Take the lock of the store at ``url`` for ``job`` (a command line, shown to other writers)."""
        url = os.fspath(url)
        zstore = cls._open(url)
        info = {"job": job, "job_id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "proc_start": _proc_start(os.getpid())}
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {"fourm_writer_lock": info}}
        payload = default_buffer_prototype().buffer.from_bytes(json.dumps(doc, indent=2).encode("utf-8"))
        for _ in range(3):
            sync(zstore.set_if_not_exists(LOCK_KEY, payload))
            have = cls._read(zstore)
            if have is not None and have.get("job_id") == info["job_id"]:
                return cls(url, zstore, info, owner=True)
            if have is None:
                continue  # released between our attempt and the read: try again
            alive = _alive(have)
            if have.get("torn") or alive is False:
                log.warning("store %s: taking over the stale writer lock of %s (that process is gone)", url,
                            describe(have))
            elif force:
                log.warning("store %s: --force: taking over the writer lock of %s", url, describe(have))
            else:
                where = "is still running" if alive else "may still be running on another host"
                raise StoreLockedError(
                    f"store {url} is being written by {describe(have)}, which {where}. Wait for it to finish; if "
                    f"that job is gone, pass --force to take over its lock (the group {LOCK_GROUP} of the store)"
                )
            cls._delete(zstore)
        raise StoreLockedError(f"store {url}: could not take the writer lock ({LOCK_GROUP}): other jobs keep taking it")

    @classmethod
    def join(cls, url: str) -> WriterLock:
        """Adopt the lock process 0 of this job took (other processes of a distributed job)."""
        url = os.fspath(url)
        zstore = cls._open(url)
        have = cls._read(zstore)
        if have is None:
            raise StoreLockedError(
                f"store {url}: process 0 of this job holds no writer lock ({LOCK_GROUP} is missing); was it removed "
                f"while the job ran?"
            )
        return cls(url, zstore, have, owner=False)

    def check(self) -> None:
        """Raise when the lock is no longer this job's (another job took it over with --force)."""
        have = self._read(self._zstore)
        if have is None or have.get("job_id") != self.job_id:
            raise StoreLockedError(
                f"store {self.url}: this job lost its writer lock"
                + (f" to {describe(have)}" if have else "") + "; stop writing and rerun it when that job ended"
            )

    def release(self) -> None:
        if not self.owner:
            return
        have = self._read(self._zstore)
        if have is not None and have.get("job_id") == self.job_id:
            self._delete(self._zstore)
        self.owner = False

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["LOCK_GROUP", "LOCK_KEY", "StoreLockedError", "WriterLock", "describe"]
