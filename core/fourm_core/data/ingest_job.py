"""``ingest``: read a folder of photos into a new store's ``rgb/raw``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import attrs
import numpy as np

from fourm_registry import ModalitySet, ModalitySpec, StorageSpec, get_modalities

from .crops import load_image
from .errors import StoreError
from .jobkit import log, progress_bar
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


def ingest(src: str | os.PathLike[str], url: str, *, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
           raw_size: int = DEFAULT_RAW_SIZE, overwrite: bool = False, workers: int = 0,
           registry: ModalitySet | None = None, progress: bool = True) -> IngestReport:
    """Read every image under ``src`` into a new store's ``rgb/raw`` (see :func:`load_image`).

    Unreadable files are logged (warning) and skipped, and listed in the report. ``workers`` > 0 decodes in
    that many processes.
    """
    t0 = time.perf_counter()
    src = os.fspath(src)
    files = find_images(src)
    if not files:
        raise StoreError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {src!r}")
    spec = _rgb_spec(raw_size, registry)
    store = Store.create(url, len(files), samples_per_shard=samples_per_shard, raw_size=raw_size,
                         overwrite=overwrite)
    store.ensure_raw(spec)
    source = store._create("_samples/source", (len(files),), str)  # noqa: SLF001 - same package
    jobs = [(os.path.join(src, f), raw_size) for f in files]
    skipped: list[tuple[str, str]] = []
    buf: list[np.ndarray] = []
    names: list[str] = []
    cursor = 0

    def flush() -> None:
        nonlocal cursor, buf, names
        if buf:
            store.write_raw(spec, cursor, buf, mark_done=False)
            data = np.empty(len(names), dtype=object)
            data[:] = names
            source[cursor:cursor + len(names)] = data
            cursor += len(buf)
            buf, names = [], []

    pool = None
    if workers > 0:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers)
        results: Iterable[tuple[np.ndarray | None, str | None]] = pool.imap(_decode, jobs, chunksize=4)
    else:
        results = map(_decode, jobs)
    bar = progress_bar(len(files), "ingest", progress)
    try:
        for rel, (img, err) in zip(files, results):
            bar.update(1)
            if img is None:
                log.warning("ingest: skipping unreadable image %s (%s)", os.path.join(src, rel), err)
                skipped.append((rel, err or "unreadable"))
                continue
            buf.append(img)
            names.append(rel)
            if len(buf) == samples_per_shard:
                flush()
        flush()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    if cursor == 0:
        raise StoreError(f"none of the {len(files)} image files under {src!r} could be read; first error: {skipped[0][1]}")
    store.set_num_samples(cursor)
    for s in range(store.num_shards):  # completion last, after every sample is in place
        store.mark_done("rgb", "raw", s)
    seconds = time.perf_counter() - t0
    if skipped:
        log.warning("ingest: %d of %d files were unreadable and skipped", len(skipped), len(files))
    log.info("ingest: %d images into %s in %.1f s", cursor, url, seconds)
    return IngestReport(num_samples=cursor, skipped=tuple(skipped), seconds=seconds)
