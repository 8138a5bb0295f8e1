"""Atomic file writes: a file is either its old content or its new content, never a torn mix.

Every writer goes to a temporary file in the same directory, flushes and fsyncs it, and renames it over the
target (``os.replace`` is atomic on POSIX and Windows within one file system); the directory is fsynced after
the rename so that the new name survives a power cut. A temporary left by a killed writer is named
``.<name>.tmp-<pid>`` and is ignored by every reader.

Used for checkpoints (``latest``, ``config.json``, weights), tokenizer directories and the store's lock file.
A leaf module: standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (makes a rename inside it durable); a no-op where directories cannot be opened."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on a clean exit it is fsynced and renamed onto ``target``.

    On an exception the temporary is removed and ``target`` is left as it was. For writers that need a path
    (``safetensors.save_file``)."""
    target = Path(target)
    tmp = _tmp_name(target)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    write_bytes(target, text.encode("utf-8"))


def replace_dir(target: str | os.PathLike[str], fill: Callable[[Path], None]) -> None:
    """Build a directory with ``fill(tmp_dir)`` beside ``target``, then swap it in for ``target``.

    A kill while ``fill`` runs leaves ``target`` untouched (and a ``.<name>.tmp-<pid>`` folder that the next
    call for the same target replaces). The swap renames the old directory aside and deletes it after the new
    one is in place, so ``target`` is missing only between two renames."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        fill(tmp)
        for root, _, files in os.walk(tmp):
            for f in files:
                with open(os.path.join(root, f), "rb+") as fh:
                    os.fsync(fh.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["atomic_path", "fsync_dir", "replace_dir", "write_bytes", "write_text"]
