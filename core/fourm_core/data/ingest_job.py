"""``ingest``: read a source's images into a new store's ``rgb/raw``, and its real labels into their modalities
(resumable; distributed by shard).

Sources (:mod:`fourm_core.data.sources`): a folder of images (with label folders), a manifest, webdataset
shards, a ``datasets`` dataset. Labels go through their plugin's reader and the image's crop
(:mod:`fourm_core.data.label_io`); a modality written from labels is recorded as such (``source: "labels"``
and the source's digest in the store's modality metadata, the digest as the array's identity), which
``fourm label`` will not overwrite without ``--overwrite``.

On one process, unreadable or refused images are skipped (logged, listed in the report) and the store
holds the readable ones in order. On several (``accelerate launch``), shard ``s`` (samples
``s * samples_per_shard ..``) belongs to process ``s % world_size`` and holds exactly those positions of the
source, so every image must be readable. A label that is missing or invalid stops the job with an error
naming the sample and the modality.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from fourm_registry import ModalitySet, ModalitySpec, StorageSpec, get_modalities

from .errors import StoreError
from .jobkit import Dist, job_lock, kill_point, log, progress_bar
from .label_io import LabelModality, SamplePreparer, plan_labels
from .lock import WriterLock
from .raw import DEFAULT_RAW_SIZE, storage_shape
from .sources import Source, open_source
from .sources.folder import IMAGE_EXTENSIONS, find_images
from .store import DEFAULT_SAMPLES_PER_SHARD, Store

__all__ = ["IMAGE_EXTENSIONS", "IngestReport", "find_images", "ingest"]


@attrs.frozen(kw_only=True)
class IngestReport:
    """What ``ingest`` did: samples written, files skipped (path, reason), seconds, label modalities written."""

    num_samples: int
    skipped: tuple[tuple[str, str], ...]
    seconds: float
    labels: tuple[str, ...] = ()

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


def _fingerprint(source: Source, keys: list[str], raw_size: int, samples_per_shard: int, layout: str,
                 labels: list[LabelModality]) -> dict[str, Any]:
    """What an ingest was started with: resuming it must see the same samples, labels and sizes."""
    return {"src": source.description, "num_files": len(keys), "files_sha256": source.digest(), "raw_size": raw_size,
            "samples_per_shard": samples_per_shard, "layout": layout, "labels": sorted(m.spec.name for m in labels),
            "complete": False}


_RESUME_KEYS = ("num_files", "files_sha256", "raw_size", "samples_per_shard", "layout", "labels")


def _open_for_resume(url: str, want: dict[str, Any]) -> Store | str | None:
    """The store an interrupted ingest of the same source left at ``url`` (None when there is no store,
    ``"replace"`` when an ingest of another source left it without any finished shard)."""
    try:
        store = Store.open(url, "r+")
    except StoreError:
        return None
    have = store.attrs.get("ingest")
    defaults = {"layout": "compact", "labels": []}  # stores of an ingest that knew only folders
    if have is None or any(have.get(k, defaults.get(k)) != want[k] for k in _RESUME_KEYS):
        if have is not None and store.has("rgb", "raw") and not store.done("rgb", "raw").any():
            log.info("ingest: %s holds no finished shard of an earlier ingest (stopped by an error?); replacing it",
                     url)
            return "replace"
        what = "was not written by `fourm ingest`" if have is None else (
            f"was ingested from other files or sizes ({have.get('num_files')} samples from "
            f"{have.get('src')}, labels {have.get('labels', [])}, raw size {have.get('raw_size')}, "
            f"{have.get('samples_per_shard')} samples per shard, {have.get('layout', 'compact')} layout)")
        raise StoreError(f"store {url} already exists and {what}; pass --overwrite to replace it, or write to "
                         f"another path")
    return store


def _resume_point(store: Store, keys: list[str]) -> tuple[int, int]:
    """(samples kept, position of the next sample): the leading shards marked done are kept, with the samples
    they came from; ingest continues with the sample after the last one of them."""
    done = store.done("rgb", "raw")
    kept = int(np.argmin(done)) if not done.all() else len(done)
    cursor = min(kept * store.samples_per_shard, store.num_samples)
    if cursor == 0:
        return 0, 0
    last = store._read(store._array("_samples/source"), np.asarray([cursor - 1]))[0]  # noqa: SLF001
    try:
        return cursor, keys.index(str(last)) + 1
    except ValueError:
        raise StoreError(f"store {store.url}: sample {cursor - 1} came from {last!r}, which is not among the samples "
                         f"to ingest; pass --overwrite to ingest again") from None


def ingest(src: str | os.PathLike[str] | None, url: str, *, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
           raw_size: int = DEFAULT_RAW_SIZE, overwrite: bool = False, workers: int = 0,
           registry: ModalitySet | None = None, progress: bool = True, force: bool = False,
           labels: Mapping[str, str] | None = None, source: Source | None = None,
           reader_options: Mapping[str, Mapping[str, Any]] | None = None, device: str = "cpu") -> IngestReport:
    """Read a source into a new store: every image into ``rgb/raw``, every label modality the source has
    into ``<modality>/raw`` through the modality's reader.

    ``src`` is what :func:`~fourm_core.data.sources.open_source` takes (a folder, with ``labels`` folders; a
    manifest; tar shards); or pass a built ``source``. ``reader_options`` are keyword arguments of a
    modality's reader (``{"depth": {"scale": 0.001}}``). ``workers`` > 0 decodes in that many processes.
    Resumable: each shard is marked done after its images, labels and sample names are written; a rerun with
    the same source keeps the finished shards and continues after them (a finished one returns at once).
    Holds the store's writer lock (``force`` takes over another job's).
    """
    t0 = time.perf_counter()
    mods = registry if registry is not None else get_modalities()
    source = source if source is not None else open_source(src, labels=labels)
    if hasattr(source, "restrict_json"):  # JSON keys of a webdataset's samples that are no modality are metadata
        source.restrict_json({n for n in source.label_names if n in mods})
    keys = source.keys()
    if not keys:
        raise StoreError(f"{source.description} has no samples")
    spec = _rgb_spec(raw_size, registry)
    plan = plan_labels(source.label_names, mods, reader_options, source.description)
    preparer = SamplePreparer(plan, raw_size, source.base_dir)  # builds the readers: bad options fail here
    dist = Dist(device)
    layout = "compact" if dist.world == 1 else "by-position"
    want = _fingerprint(source, keys, raw_size, samples_per_shard, layout, plan)
    job = f"fourm ingest {source.description} {url}"
    if dist.is_main:
        store = None if overwrite else _open_for_resume(url, want)
        if store is None or store == "replace":
            overwrite = overwrite or store == "replace"
            if overwrite:  # refuse to wipe a store another job writes; the wipe removes this lock too
                WriterLock.acquire(url, job, force=force).release()
            Store.create(url, len(keys), samples_per_shard=samples_per_shard, raw_size=raw_size,
                         overwrite=overwrite, extra_attrs={"ingest": want})
    dist.barrier()
    with job_lock(url, dist, job, force=force) as lock:
        store = Store.open(url, "r+")
        if store.attrs["ingest"].get("complete") and store.is_complete("rgb", "raw"):
            log.info("ingest: %s is already complete (%d images)", url, store.num_samples)
            return IngestReport(num_samples=store.num_samples, skipped=(), seconds=time.perf_counter() - t0,
                                labels=tuple(m.spec.name for m in plan))
        if dist.is_main:
            _ensure_arrays(store, spec, plan, source)
        dist.barrier()
        store = Store.open(url, "r+")
        writer = _Writer(store, spec, plan, lock)
        if dist.world == 1:
            report = _ingest_compact(writer, source, keys, preparer, workers, progress, t0)
        else:
            report = _ingest_by_position(writer, source, preparer, dist, workers, progress, t0)
        dist.barrier()
        if dist.is_main:
            store = Store.open(url, "r+")
            store._update_root(ingest={**store.attrs["ingest"], "complete": True})  # noqa: SLF001
        return report


def _ensure_arrays(store: Store, spec: ModalitySpec, plan: list[LabelModality], source: Source) -> None:
    """Create the rgb, sample-name and label arrays (process 0, before the others write); record the labels."""
    store.ensure_raw(spec)
    if store._array("_samples/source", missing_ok=True) is None:  # noqa: SLF001 - same package
        store._create("_samples/source", (store.num_samples,), str)  # noqa: SLF001
    digest = source.digest()
    for m in plan:
        store.ensure_raw(m.spec, identity={"kind": "labels", "source": source.description, "sha256": digest,
                                           "reader_options": json.loads(json.dumps(dict(m.options), default=str))})
        store._set_modality_meta(m.spec.name, source="labels", labels={"from": source.description,  # noqa: SLF001
                                                                       "sha256": digest})


class _Writer:
    """Writes prepared samples at a position; marks a shard done (labels first, rgb last) once it is whole."""

    def __init__(self, store: Store, spec: ModalitySpec, plan: list[LabelModality], lock: Any):
        self.store, self.spec, self.plan, self.lock = store, spec, plan, lock
        self.label_specs = {m.spec.name: m.spec for m in plan}

    def write(self, start: int, images: list[np.ndarray], labels: list[dict[str, Any]], names: list[str]) -> None:
        store = self.store
        if not images:
            return
        if start + len(images) > store.num_samples:
            raise StoreError(f"store {store.url} has room for {store.num_samples} images but more are readable now; "
                             f"pass --overwrite to ingest again")
        self.lock.check()
        store.write_raw(self.spec, start, images, mark_done=False)
        for name, lspec in self.label_specs.items():
            store.write_raw(lspec, start, [raws[name] for raws in labels], mark_done=False)
        data = np.empty(len(names), dtype=object)
        data[:] = names
        store._array("_samples/source")[start:start + len(names)] = data  # noqa: SLF001
        shard = start // store.samples_per_shard
        kill_point(f"ingest:rgb:{shard}")
        if start + len(images) == min((shard + 1) * store.samples_per_shard, store.num_samples):
            for name in self.label_specs:
                store.mark_done(name, "raw", shard)
            store.mark_done("rgb", "raw", shard)  # last: resuming keys on it


def _prepared(preparer: SamplePreparer, samples: Iterable[Any], workers: int) -> tuple[Iterable[Any], Any]:
    """``(sample, prepared)`` pairs in order; with ``workers``, decoded in that many processes, a bounded
    window of samples at a time (a streamed source is never held in memory whole)."""
    if workers <= 0:
        return ((s, preparer(s)) for s in samples), None
    import itertools
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers)

    def windows() -> Iterable[Any]:
        it = iter(samples)
        while window := list(itertools.islice(it, 16 * workers)):
            yield from zip(window, pool.imap(preparer, window, chunksize=4))

    return windows(), pool


def _close(pool: Any) -> None:
    if pool is not None:
        pool.close()
        pool.join()


def _ingest_compact(writer: _Writer, source: Source, keys: list[str], preparer: SamplePreparer, workers: int,
                    progress: bool, t0: float) -> IngestReport:
    store = writer.store
    url, per_shard = store.url, store.samples_per_shard
    cursor, first = _resume_point(store, keys)
    if cursor:
        log.info("ingest: resuming %s after %d images (%d shards), from sample %d of %d", url, cursor,
                 cursor // per_shard, first, len(keys))
    skipped: list[tuple[str, str]] = []
    buf: list[np.ndarray] = []
    labs: list[dict[str, Any]] = []
    names: list[str] = []
    todo = range(first, len(keys))
    results, pool = _prepared(preparer, source.samples(todo), workers)
    bar = progress_bar(len(todo), "ingest", progress)
    try:
        for sample, (img, raws, err) in results:
            bar.update(1)
            if img is None:
                log.warning("ingest: skipping %s (%s)", sample.where, err)
                skipped.append((sample.key, err or "unreadable"))
                continue
            buf.append(img)
            labs.append(raws)
            names.append(sample.key)
            if len(buf) == per_shard:
                writer.write(cursor, buf, labs, names)
                cursor += len(buf)
                buf, labs, names = [], [], []
        if cursor + len(buf) == 0:
            raise StoreError(f"none of the {len(keys)} images of {source.description} could be read; first error: "
                             f"{skipped[0][1]}")
        store.set_num_samples(cursor + len(buf))  # shrink first: the last shard is then written whole
        writer.write(cursor, buf, labs, names)
        cursor += len(buf)
    finally:
        bar.close()
        _close(pool)
    seconds = time.perf_counter() - t0
    if skipped:
        log.warning("ingest: %d of %d images were unreadable or refused and skipped", len(skipped), len(todo))
    log.info("ingest: %d images into %s in %.1f s", cursor, url, seconds)
    return IngestReport(num_samples=cursor, skipped=tuple(skipped), seconds=seconds,
                        labels=tuple(writer.label_specs))


def _ingest_by_position(writer: _Writer, source: Source, preparer: SamplePreparer, dist: Dist, workers: int,
                        progress: bool, t0: float) -> IngestReport:
    store = writer.store
    shards = store.shards()
    done = store.done("rgb", "raw")
    mine = [s for s in range(len(shards)) if s % dist.world == dist.rank and not done[s]]
    bar = progress_bar(sum(len(shards[s]) for s in mine), "ingest", progress and dist.is_main)
    samples = 0
    try:
        for s in mine:
            rng = shards[s]
            results, pool = _prepared(preparer, source.samples(rng), workers)
            try:
                imgs, labs, names = [], [], []
                for sample, (img, raws, err) in results:
                    if img is None:
                        raise StoreError(f"{sample.where}: the image is unreadable ({err}); a distributed ingest "
                                         f"writes every sample at its position, so fix or remove it (an ingest on "
                                         f"one process skips unreadable images)")
                    imgs.append(img)
                    labs.append(raws)
                    names.append(sample.key)
                    bar.update(1)
            finally:
                _close(pool)
            if len(imgs) != len(rng):
                raise StoreError(f"{source.description} yielded {len(imgs)} samples for shard {s} "
                                 f"({rng.start}..{rng.stop - 1}); did the source change since it was listed?")
            writer.write(rng.start, imgs, labs, names)
            samples += len(imgs)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    log.info("ingest (process %d of %d): %d images into %s in %.1f s", dist.rank, dist.world, samples, store.url,
             seconds)
    return IngestReport(num_samples=store.num_samples, skipped=(), seconds=seconds, labels=tuple(writer.label_specs))
