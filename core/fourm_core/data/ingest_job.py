"""``ingest``: read a folder of photos into a new store's ``rgb/raw`` (resumable)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from fourm_registry import ModalitySet, ModalitySpec, StorageSpec, get_modalities

from .crops import load_image
from .errors import StoreError
from .jobkit import kill_point, log, progress_bar
from .lock import WriterLock
from .raw import DEFAULT_RAW_SIZE, storage_shape
from .store import DEFAULT_SAMPLES_PER_SHARD, Store

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


@attrs.frozen(kw_only=True)
class IngestReport:
    """What ``ingest`` did: samples written, files skipped (path, reason), seconds."""

    num_samples: int
    skipped: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return (self.num_samples + len(self.skipped)) / max(self.seconds, 1e-9)


def _rgb_spec(raw_size: int, registry: ModalitySet | None) -> ModalitySpec:
    mods = registry if registry is not None else get_modalities()
    if "rgb" in mods:
        spec = mods["rgb"]
        if spec.storage is None or spec.storage.dtype != "uint8" or storage_shape(spec, raw_size) != (raw_size, raw_size, 3):
            raise StoreError(
                f"the installed 'rgb' modality (plugin {spec.plugin}) stores {spec.storage}, but ingest writes uint8 "
                f"({raw_size}, {raw_size}, 3); fix the rgb plugin's StorageSpec"
            )
        return spec
    # no rgb plugin installed: the store still gets its rgb raw array, attributed to fourm-core
    from fourm_core import __version__

    return ModalitySpec(name="rgb", kind="pixels", grid=(14, 14), patch_size=16, channels=3, encoder=True,
                        storage=StorageSpec(dtype="uint8", shape=(DEFAULT_RAW_SIZE, DEFAULT_RAW_SIZE, 3)),
                        plugin="fourm-core", version=__version__)


def find_images(src: str | os.PathLike[str]) -> list[str]:
    """Image files (jpg/jpeg/png/webp, any case) under ``src``, recursively, sorted by relative path."""
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise StoreError(f"ingest source {src!r} is not a directory of images")
    found = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                found.append(os.path.relpath(os.path.join(root, f), src))
    return sorted(found)


def _decode(args: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    path, size = args
    try:
        return load_image(path, size), None
    except Exception as exc:  # noqa: BLE001 - reported and skipped by the caller
        return None, f"{type(exc).__name__}: {exc}"


def _fingerprint(src: str, files: list[str], raw_size: int, samples_per_shard: int) -> dict[str, Any]:
    """What an ingest was started with: resuming it must see the same files and sizes."""
    listing = hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()
    return {"src": os.path.abspath(src), "num_files": len(files), "files_sha256": listing, "raw_size": raw_size,
            "samples_per_shard": samples_per_shard, "complete": False}


def _open_for_resume(url: str, want: dict[str, Any]) -> Store | None:
    """The store an interrupted ingest of the same files left at ``url`` (None when there is no store)."""
    try:
        store = Store.open(url, "r+")
    except StoreError:
        return None
    have = store.attrs.get("ingest")
    keys = ("num_files", "files_sha256", "raw_size", "samples_per_shard")
    if have is None or any(have.get(k) != want[k] for k in keys):
        what = "was not written by `fourm ingest`" if have is None else (
            f"was ingested from other files or sizes ({have.get('num_files')} files from {have.get('src')}, raw size "
            f"{have.get('raw_size')}, {have.get('samples_per_shard')} samples per shard)")
        raise StoreError(f"store {url} already exists and {what}; pass --overwrite to replace it, or write to "
                         f"another path")
    return store


def _resume_point(store: Store, files: list[str]) -> tuple[int, int]:
    """(samples kept, index of the next file): the leading shards marked done are kept, with the files their
    samples came from; ingest continues with the file after the last one of them."""
    done = store.done("rgb", "raw")
    kept = int(np.argmin(done)) if not done.all() else len(done)
    cursor = min(kept * store.samples_per_shard, store.num_samples)
    if cursor == 0:
        return 0, 0
    last = store._read(store._array("_samples/source"), np.asarray([cursor - 1]))[0]  # noqa: SLF001
    try:
        return cursor, files.index(str(last)) + 1
    except ValueError:
        raise StoreError(f"store {store.url}: sample {cursor - 1} came from {last!r}, which is not among the files "
                         f"to ingest; pass --overwrite to ingest again") from None


def ingest(src: str | os.PathLike[str], url: str, *, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
           raw_size: int = DEFAULT_RAW_SIZE, overwrite: bool = False, workers: int = 0,
           registry: ModalitySet | None = None, progress: bool = True, force: bool = False) -> IngestReport:
    """Read every image under ``src`` into a new store's ``rgb/raw`` (see :func:`load_image`).

    Unreadable or refused files (too many pixels, too elongated) are logged (warning) and skipped, and listed
    in the report. ``workers`` > 0 decodes in that many processes. Resumable: each shard is marked done after
    its images and their file names are written; an interrupted ingest rerun with the same files keeps the
    finished shards and continues after them (a finished one returns at once). Holds the store's writer lock
    (``force`` takes over another job's).
    """
    t0 = time.perf_counter()
    src = os.fspath(src)
    files = find_images(src)
    if not files:
        raise StoreError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {src!r}")
    spec = _rgb_spec(raw_size, registry)
    want = _fingerprint(src, files, raw_size, samples_per_shard)
    job = f"fourm ingest {src} {url}"
    store = None if overwrite else _open_for_resume(url, want)
    if store is None:
        if overwrite:  # refuse to wipe a store another job writes; the wipe removes this lock too
            WriterLock.acquire(url, job, force=force).release()
        store = Store.create(url, len(files), samples_per_shard=samples_per_shard, raw_size=raw_size,
                             overwrite=overwrite, extra_attrs={"ingest": want})
    with WriterLock.acquire(url, job, force=force):
        if store.attrs["ingest"].get("complete") and store.is_complete("rgb", "raw"):
            log.info("ingest: %s is already complete (%d images)", url, store.num_samples)
            return IngestReport(num_samples=store.num_samples, skipped=(), seconds=time.perf_counter() - t0)
        return _ingest_locked(store, spec, src, files, workers, progress, t0)


def _ingest_locked(store: Store, spec: ModalitySpec, src: str, files: list[str], workers: int, progress: bool,
                   t0: float) -> IngestReport:
    url, per_shard = store.url, store.samples_per_shard
    store.ensure_raw(spec)
    source = store._array("_samples/source", missing_ok=True)  # noqa: SLF001 - same package
    if source is None:
        source = store._create("_samples/source", (store.num_samples,), str)  # noqa: SLF001
    cursor, first = _resume_point(store, files)
    if cursor:
        log.info("ingest: resuming %s after %d images (%d shards), from file %d of %d", url, cursor,
                 cursor // per_shard, first, len(files))
    jobs = [(os.path.join(src, f), store.raw_size) for f in files[first:]]
    skipped: list[tuple[str, str]] = []
    buf: list[np.ndarray] = []
    names: list[str] = []

    def flush() -> None:
        nonlocal cursor, buf, names
        if buf:
            if cursor + len(buf) > store.num_samples:
                raise StoreError(f"store {url} has room for {store.num_samples} images but more are readable now; "
                                 f"pass --overwrite to ingest again")
            store.write_raw(spec, cursor, buf, mark_done=False)
            data = np.empty(len(names), dtype=object)
            data[:] = names
            source[cursor:cursor + len(names)] = data
            shard = cursor // per_shard
            kill_point(f"ingest:rgb:{shard}")
            if cursor + len(buf) == min((shard + 1) * per_shard, store.num_samples):
                store.mark_done("rgb", "raw", shard)  # after the images and their file names
            cursor += len(buf)
            buf, names = [], []

    pool = None
    if workers > 0:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers)
        results: Iterable[tuple[np.ndarray | None, str | None]] = pool.imap(_decode, jobs, chunksize=4)
    else:
        results = map(_decode, jobs)
    bar = progress_bar(len(jobs), "ingest", progress)
    try:
        for rel, (img, err) in zip(files[first:], results):
            bar.update(1)
            if img is None:
                log.warning("ingest: skipping image %s (%s)", os.path.join(src, rel), err)
                skipped.append((rel, err or "unreadable"))
                continue
            buf.append(img)
            names.append(rel)
            if len(buf) == per_shard:
                flush()
        if cursor + len(buf) == 0:
            raise StoreError(f"none of the {len(files)} image files under {src!r} could be read; first error: "
                             f"{skipped[0][1]}")
        store.set_num_samples(cursor + len(buf))  # shrink first: the last shard is then written whole
        source = store._array("_samples/source")  # noqa: SLF001
        flush()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    store._update_root(ingest={**store.attrs["ingest"], "complete": True})  # noqa: SLF001
    seconds = time.perf_counter() - t0
    if skipped:
        log.warning("ingest: %d of %d files were unreadable or refused and skipped", len(skipped), len(jobs))
    log.info("ingest: %d images into %s in %.1f s", cursor, url, seconds)
    return IngestReport(num_samples=cursor, skipped=tuple(skipped), seconds=seconds)
