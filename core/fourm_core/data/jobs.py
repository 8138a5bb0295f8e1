"""Dataset jobs: ingest a folder of photos, pseudo-label, tokenize, inspect.

Python API (the ``fourm`` commands of the same names call these)::

    ingest(src, url, *, samples_per_shard=64, raw_size=256, overwrite=False, workers=0) -> IngestReport
    label(url, ["depth", "canny_edge"], *, overwrite=False, batch_size=None, device="cpu",
          weights={"depth": "/path"}) -> dict[str, JobReport]
    tokenize(url, ["tok_rgb", "depth"], *, crops=1, tokenizers_dir=DIR (or codecs={...}), seed=0,
             overwrite=False, batch_size=16, device="cpu") -> dict[str, JobReport]
    inspect_store(url) -> dict                  # the JSON of ``fourm inspect --json``

``label`` and ``tokenize`` are resumable and distributed: the work unit is a shard; shard ``s`` belongs to
process ``s % world_size`` (Accelerate's ``PartialState``: run them under ``accelerate launch`` or
``torchrun`` for several processes); shards recorded as done are skipped, a shard interrupted part-way is
redone from its start, and its completion flag is written only after its data, so nothing is written twice
and no two processes ever write into the same zarr shard. Process 0 creates arrays and metadata, then all
processes meet at a barrier.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from fourm_registry import ModalitySet, ModalitySpec, StorageSpec, get_modalities

from ..kinds import adapter_for
from .crops import crop_params, load_image
from .store import DEFAULT_RAW_SIZE, DEFAULT_SAMPLES_PER_SHARD, Store, StoreError, is_text_array, storage_shape

log = logging.getLogger(__name__)

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


@attrs.frozen(kw_only=True)
class JobReport:
    """What ``label`` / ``tokenize`` did for one modality on this process."""

    modality: str
    shards_done: int
    shards_skipped: int
    samples: int
    seconds: float


# --------------------------------------------------------------------------------------------------
# process group
class _Dist:
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


def _kill_point(where: str) -> None:
    """Test hook: SIGKILL this process when the environment variable FOURM_TEST_KILL_AT equals ``where``
    (``"<job>:<modality>:<shard>"``, reached after the shard's data is written, before its done flag); the crash
    tests of ``tests/data/test_jobs_faults.py`` use it to interrupt a job at an exact point."""
    if os.environ.get("FOURM_TEST_KILL_AT") == where:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------------
# ingest
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
    bar = _progress(len(files), "ingest", progress)
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


# --------------------------------------------------------------------------------------------------
# label
def _resolve(names: Sequence[str], registry: ModalitySet | None) -> list[ModalitySpec]:
    mods = registry if registry is not None else get_modalities()
    if not names:
        raise StoreError("no modalities given; pass --modalities a,b (see `fourm modalities`)")
    return [mods[n] for n in names]


def _order_by_requires(specs: list[ModalitySpec]) -> list[ModalitySpec]:
    """Specs ordered so that a modality comes after the modalities it requires (when both are given)."""
    by_name = {s.name: s for s in specs}
    ordered: list[ModalitySpec] = []
    visiting: set[str] = set()

    def visit(s: ModalitySpec) -> None:
        if s in ordered:
            return
        if s.name in visiting:
            raise StoreError(f"modality {s.name!r} requires itself through {sorted(visiting)}: a dependency cycle")
        visiting.add(s.name)
        for r in s.requires:
            if r in by_name:
                visit(by_name[r])
        visiting.discard(s.name)
        ordered.append(s)

    for s in specs:
        visit(s)
    return ordered


def _parse_weights(weights: Mapping[str, str] | None, specs: list[ModalitySpec]) -> dict[str, str]:
    weights = dict(weights or {})
    names = {s.name for s in specs}
    unknown = sorted(set(weights) - names)
    if unknown:
        raise StoreError(f"--weights names {unknown}, which are not among the modalities being labeled {sorted(names)}")
    return weights


def label(url: str, modalities: Sequence[str], *, overwrite: bool = False, batch_size: int | None = None,
          device: str = "cpu", weights: Mapping[str, str] | None = None, registry: ModalitySet | None = None,
          progress: bool = True, labeler_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, JobReport]:
    """Run each modality's pseudo-labeler over the store and write ``<name>/raw`` (resumable, distributed)."""
    specs = _order_by_requires(_resolve(modalities, registry))
    weights = _parse_weights(weights, specs)
    dist = _Dist(device)
    store = Store.open(url, "r+")
    for spec in specs:
        if spec.labeler is None:
            raise StoreError(
                f"modality {spec.name!r} (plugin {spec.plugin}) has no pseudo-labeler; "
                + ("its raw data is written by `fourm ingest`" if spec.name == "rgb" else
                   "label it with another tool and write it with Store.write_raw")
            )
        if spec.storage is None:
            raise StoreError(f"modality {spec.name!r} (plugin {spec.plugin}) declares no StorageSpec; it cannot be stored")
    planned: set[str] = set()
    for spec in specs:
        for req in dict.fromkeys(("rgb", *spec.requires)):
            if req in planned:
                continue
            if not store.is_complete(req, "raw"):
                have = store.complete_samples(req, "raw") if store.has(req, "raw") else 0
                raise StoreError(
                    f"modality {spec.name!r} requires {req!r}, but store {url} has {have} of {store.num_samples} "
                    f"samples of {req!r}; run `fourm label {url} --modalities {req}` first (or add it to "
                    f"--modalities)" if req != "rgb" else
                    f"modality {spec.name!r} needs 'rgb', which store {url} lacks or has incomplete; run "
                    f"`fourm ingest SRC {url}` first"
                )
        planned.add(spec.name)

    reports = {}
    for spec in specs:
        if dist.is_main:
            store.ensure_raw(spec, overwrite=overwrite)
            store._set_modality_meta(spec.name, weights=weights.get(spec.name, spec.default_weights))  # noqa: SLF001
        dist.barrier()
        store = Store.open(url, "r+")  # see the arrays process 0 created
        reports[spec.name] = _label_one(store, spec, dist, batch_size=batch_size, device=device,
                                        weights=weights.get(spec.name, spec.default_weights), progress=progress,
                                        extra=dict((labeler_kwargs or {}).get(spec.name, {})))
        dist.barrier()
    return reports


def _label_one(store: Store, spec: ModalitySpec, dist: _Dist, *, batch_size: int | None, device: str,
               weights: str | None, progress: bool, extra: dict[str, Any]) -> JobReport:
    t0 = time.perf_counter()
    shards = store.shards()
    done = store.done(spec.name, "raw")
    mine = [s for s in range(len(shards)) if s % dist.world == dist.rank]
    todo = [s for s in mine if not done[s]]
    skipped = len(mine) - len(todo)
    if skipped:
        log.info("label %s: %d shard(s) already complete, skipped", spec.name, skipped)
    samples = 0
    if todo:
        kwargs: dict[str, Any] = {"weights": weights, "device": device, **extra}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        labeler = spec.labeler.build(**kwargs)
        bs = int(batch_size or getattr(labeler, "batch_size", 8) or 8)
        # optional inputs (e.g. metadata counts instances when sam_instance is there) are fed when complete
        optional = [m for m in getattr(labeler, "optional_inputs", ())
                    if m not in spec.requires and store.has(m, "raw") and store.is_complete(m, "raw")]
        inputs_needed = list(dict.fromkeys(("rgb", *spec.requires, *optional)))
        bar = _progress(sum(len(shards[s]) for s in todo), f"label {spec.name}", progress and dist.is_main)
        try:
            for s in todo:
                rng = shards[s]
                outs: list[Any] = []
                for a in range(rng.start, rng.stop, bs):
                    idx = range(a, min(a + bs, rng.stop))
                    inputs = {m: store.read_raw(m, idx) for m in inputs_needed}
                    result = list(labeler(inputs))
                    if len(result) != len(idx):
                        raise StoreError(
                            f"labeler of modality {spec.name!r} ({spec.labeler.target}) returned {len(result)} "
                            f"outputs for {len(idx)} inputs"
                        )
                    outs.extend(result)
                    bar.update(len(idx))
                store.write_raw(spec, rng.start, outs, mark_done=False)
                _kill_point(f"label:{spec.name}:{s}")
                store.mark_done(spec.name, "raw", s)  # after the data: an interrupted shard is redone
                samples += len(rng)
        finally:
            bar.close()
    return JobReport(modality=spec.name, shards_done=len(todo), shards_skipped=skipped, samples=samples,
                     seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# tokenize
def _size_of(obj: Any) -> tuple[int, int] | None:
    for holder in (obj, getattr(obj, "config", None)):
        if holder is None:
            continue
        for attr in ("image_size", "input_size"):
            v = holder.get(attr) if isinstance(holder, Mapping) else getattr(holder, attr, None)
            if isinstance(v, int) and v > 0:
                return (v, v)
            if isinstance(v, (tuple, list)) and len(v) == 2:
                return (int(v[0]), int(v[1]))
    return None


def _crop_size(spec: ModalitySpec, codec: Any) -> tuple[int, int] | None:
    """The size the codec's tokenizer expects its (cropped) input at, if it is image-like."""
    for obj in (codec, getattr(codec, "tokenizer", None)):
        if obj is not None:
            size = _size_of(obj)
            if size is not None:
                return size
    return adapter_for(spec).crop_size(spec)


def tokenize(url: str, modalities: Sequence[str], *, crops: int = 1, tokenizers_dir: str | None = None,
             codecs: Mapping[str, Any] | None = None, seed: int = 0, overwrite: bool = False,
             batch_size: int = 16, device: str = "cpu", registry: ModalitySet | None = None,
             progress: bool = True, overwrite_crops: bool = False) -> dict[str, JobReport]:
    """Tokenize ``crops`` crops per sample of each modality into ``<name>/tokens`` (resumable, distributed).

    Codecs come from ``codecs`` (name → object with ``encode(list[raw]) -> LongTensor (B, num_tokens)``) or
    from ``fourm_core.tokenizers.load_codecs(tokenizers_dir, modalities)``. A spec with ``source`` reads that
    modality's raw data. Each raw is cropped by ``spec.transform.build().crop(raw, box=, flip=, size=)``.
    """
    import torch

    if crops < 1:
        raise StoreError(f"--crops must be >= 1, got {crops}")
    specs = _resolve(modalities, registry)
    mods = ModalitySet(specs)
    if codecs is None:
        if tokenizers_dir is None:
            raise StoreError("tokenize needs --tokenizers DIR (a tokenizer directory written by `fourm train-tokenizer`)")
        from fourm_core.tokenizers import load_codecs

        codecs = load_codecs(tokenizers_dir, mods)
    missing = [s.name for s in specs if s.name not in codecs]
    if missing:
        raise StoreError(f"no tokenizer codec for modalities {missing}; train them with `fourm train-tokenizer --modality NAME`")
    dist = _Dist(device)
    store = Store.open(url, "r+")
    for spec in specs:
        src = spec.source or spec.name
        if not store.is_complete(src, "raw"):
            raise StoreError(
                f"modality {spec.name!r} tokenizes {src}/raw, which store {url} lacks or has incomplete "
                f"({store.complete_samples(src, 'raw') if store.has(src, 'raw') else 0} of {store.num_samples} "
                f"samples); run `fourm label {url} --modalities {src}` first"
            )
    if dist.is_main:
        if overwrite_crops:
            dropped = store.reset_crops()
            if dropped:
                log.warning("tokenize: new crops; deleted the tokens of %s, which must be tokenized again", dropped)
        store.ensure_crops(crops, seed=seed, overwrite=False)
        for spec in specs:
            store.ensure_tokens(spec, crops, overwrite=overwrite, tokenizer=os.fspath(tokenizers_dir) if tokenizers_dir else None)
    dist.barrier()
    store = Store.open(url, "r+")
    transforms = {s.name: _transform_for(s, codecs[s.name], raw_size=store.raw_size) for s in specs}
    for codec in codecs.values():
        if hasattr(codec, "to") and callable(codec.to):
            codec.to(device)
        elif hasattr(getattr(codec, "tokenizer", None), "to"):
            codec.tokenizer.to(device)
    t0 = time.perf_counter()
    shards = store.shards()
    mine = [s for s in range(len(shards)) if s % dist.world == dist.rank]
    counts = {s.name: [0, 0, 0] for s in specs}  # done, skipped, samples
    total = sum(len(shards[s]) for s in mine) * len(specs)
    bar = _progress(total, "tokenize", progress and dist.is_main)
    try:
        crops_done = store.crops_done()
        for s in mine:
            rng = shards[s]
            if not crops_done[s]:
                store.write_crops(rng.start, crop_params(rng, crops, store.raw_size, seed=seed))
            params = store.read_crops(rng)
            for spec in specs:
                if store.is_done(spec.name, "tokens", s):
                    counts[spec.name][1] += 1
                    bar.update(len(rng))
                    continue
                tokens = _tokenize_shard(store, spec, codecs[spec.name], transforms[spec.name], rng, params,
                                         batch_size, torch)
                store.write_tokens(spec, rng.start, tokens, mark_done=False)
                _kill_point(f"tokenize:{spec.name}:{s}")
                store.mark_done(spec.name, "tokens", s)
                counts[spec.name][0] += 1
                counts[spec.name][2] += len(rng)
                bar.update(len(rng))
    finally:
        bar.close()
    dist.barrier()
    seconds = time.perf_counter() - t0
    return {n: JobReport(modality=n, shards_done=c[0], shards_skipped=c[1], samples=c[2], seconds=seconds)
            for n, c in counts.items()}


def _transform_for(spec: ModalitySpec, codec: Any, *, raw_size: int) -> Any:
    """The plugin's transform (told the store's raw size when its ref declares that context), else the codec's
    default transform when it can crop, else None (no crop)."""
    if spec.transform is not None:
        return spec.transform.build(context={"raw_size": raw_size})
    t = getattr(codec, "transform", None)
    return t if t is not None and callable(getattr(t, "crop", None)) and spec.kind != "vector" else None


def _tokenize_shard(store: Store, spec: ModalitySpec, codec: Any, transform: Any, rng: range, params: np.ndarray,
                    batch_size: int, torch: Any) -> np.ndarray:
    src = spec.source or spec.name
    num_crops = params.shape[1]
    size = _crop_size(spec, codec)
    raws = store.read_raw(src, rng)
    items: list[Any] = []
    for raw, p in zip(raws, params):
        for c in range(num_crops):
            top, left, h, w, flip = (int(v) for v in p[c])
            if transform is None:
                items.append(raw)
            else:
                items.append(transform.crop(raw, box=(top, left, h, w), flip=bool(flip), size=size or (h, w)))
    out = []
    with torch.inference_mode():
        for a in range(0, len(items), batch_size):
            ids = codec.encode(items[a:a + batch_size])
            ids = ids.detach().cpu().numpy() if hasattr(ids, "detach") else np.asarray(ids)
            if ids.ndim != 2 or ids.shape[1] != spec.num_tokens:
                raise StoreError(
                    f"codec of modality {spec.name!r} returned tokens of shape {tuple(ids.shape)}, expected "
                    f"(batch, {spec.num_tokens})"
                )
            out.append(ids)
    return np.concatenate(out).reshape(len(rng), num_crops, spec.num_tokens)


# --------------------------------------------------------------------------------------------------
# inspect
def _hash_array(store: Store, arr: Any, done: np.ndarray) -> str:
    h = hashlib.sha256()
    is_text = is_text_array(arr)
    for s, rng in enumerate(store.shards()):
        if not done[s] or not len(rng):
            continue
        data = store._read(arr, np.arange(rng.start, rng.stop))  # noqa: SLF001 - same package
        if is_text:
            for text in data.tolist():
                b = str(text).encode("utf-8")
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
        else:
            data = np.ascontiguousarray(data)
            if data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("<"))
            h.update(data.tobytes())
    return h.hexdigest()


def _array_info(store: Store, name: str, what: str, arr: Any) -> dict[str, Any]:
    done = store.done(name, what) if what != "crops" else store.crops_done()
    text = is_text_array(arr)
    complete = int(sum(len(r) for r, d in zip(store.shards(), done) if d))
    return {
        "complete": complete,
        "dtype": "json" if text else str(np.dtype(arr.dtype)),
        "shape": list(arr.shape[1:]),
        "bytes": int(arr.nbytes_stored()),
        "sha256": _hash_array(store, arr, done),
    }


def inspect_store(url: str) -> dict[str, Any]:
    """Per modality: complete samples, dtype, per-sample shape, bytes stored and sha256 of the values.

    ``modalities[name]`` describes ``<name>/raw`` (or ``<name>/tokens`` when the modality has no raw array,
    e.g. ``tok_rgb``), and ``modalities[name]["tokens"]`` describes ``<name>/tokens`` when it exists. The
    hash covers the complete shards only, in sample order, so two stores with the same content compare equal
    however they were written.
    """
    store = Store.open(url, "r")
    names = set(store.modalities())
    for gname, _ in store._group.groups():  # noqa: SLF001 - same package
        if not gname.startswith("_"):
            names.add(gname)
    out: dict[str, Any] = {"num_samples": store.num_samples, "format_version": store.format_version,
                           "samples_per_shard": store.samples_per_shard, "raw_size": store.raw_size,
                           "modalities": {}}
    meta = store.modalities()
    for name in sorted(names):
        entry: dict[str, Any] = {}
        info = meta.get(name, {})
        entry["plugin"], entry["version"] = info.get("plugin"), info.get("version")
        tok = _array_info(store, name, "tokens", store.array(name, "tokens")) if store.has(name, "tokens") else None
        if store.has(name, "raw"):
            entry.update(_array_info(store, name, "raw", store.array(name, "raw")))
        elif tok is not None:
            entry.update(tok)
        if tok is not None:
            entry["tokens"] = tok
        out["modalities"][name] = entry
    if store.num_crops:
        arr = store._array("_crops/params")  # noqa: SLF001
        out["crops"] = _array_info(store, "_crops", "crops", arr)
        out["crops"]["num_crops"] = store.num_crops
    return out


def format_inspect(info: Mapping[str, Any]) -> str:
    """Human-readable table of :func:`inspect_store`'s result."""
    lines = [f"samples: {info['num_samples']}  (shards of {info['samples_per_shard']}, raw size {info['raw_size']}, "
             f"format v{info['format_version']})"]
    for name, e in info["modalities"].items():
        lines.append(f"{name:<18} {e.get('complete', 0):>7}/{info['num_samples']} {e.get('dtype')!s:<8} "
                     f"{str(tuple(e.get('shape') or ())):<16} {e.get('bytes', 0) / 1e6:9.2f} MB  {e.get('sha256', '')[:16]}")
        if "tokens" in e and e["tokens"] is not e:
            t = e["tokens"]
            lines.append(f"{'  tokens':<18} {t['complete']:>7}/{info['num_samples']} {t['dtype']:<8} "
                         f"{str(tuple(t['shape'])):<16} {t['bytes'] / 1e6:9.2f} MB  {t['sha256'][:16]}")
    if "crops" in info:
        c = info["crops"]
        lines.append(f"{'_crops':<18} {c['complete']:>7}/{info['num_samples']} crops={c['num_crops']}  {c['sha256'][:16]}")
    return "\n".join(lines)


