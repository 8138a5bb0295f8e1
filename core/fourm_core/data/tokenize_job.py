"""``tokenize``: cut crops of each sample and write each modality's token ids to ``<name>/tokens``."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fourm_registry import ModalitySet, ModalitySpec

from ..kinds import adapter_for
from .crops import crop_params
from .errors import StoreError
from .identity import tokenizer_identity
from .jobkit import Dist, JobReport, job_lock, kill_point, log, progress_bar, resolve_modalities
from .store import Store


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
             progress: bool = True, overwrite_crops: bool = False, force: bool = False) -> dict[str, JobReport]:
    """Tokenize ``crops`` crops per sample of each modality into ``<name>/tokens`` (resumable, distributed).

    Codecs come from ``codecs`` (name → object with ``encode(list[raw]) -> LongTensor (B, num_tokens)``) or
    from ``fourm_core.tokenizers.load_codecs(tokenizers_dir, modalities)``. A spec with ``source`` reads that
    modality's raw data. Each raw is cropped by ``spec.transform.build().crop(raw, box=, flip=, size=)``.

    Holds the store's writer lock (``force`` takes over one held by another job). A resume must use the
    tokenizer of the finished shards (its identity is recorded per array); ``overwrite`` re-tokenizes.
    """
    import torch

    if crops < 1:
        raise StoreError(f"--crops must be >= 1, got {crops}")
    specs = resolve_modalities(modalities, registry)
    mods = ModalitySet(specs)
    if codecs is None:
        if tokenizers_dir is None:
            raise StoreError("tokenize needs --tokenizers DIR (a tokenizer directory written by `fourm train-tokenizer`)")
        from fourm_core.tokenizers import load_codecs

        codecs = load_codecs(tokenizers_dir, mods)
    missing = [s.name for s in specs if s.name not in codecs]
    if missing:
        raise StoreError(f"no tokenizer codec for modalities {missing}; train them with `fourm train-tokenizer --modality NAME`")
    dist = Dist(device)
    store = Store.open(url, "r+")
    for spec in specs:
        src = spec.source or spec.name
        if not store.is_complete(src, "raw"):
            raise StoreError(
                f"modality {spec.name!r} tokenizes {src}/raw, which store {url} lacks or has incomplete "
                f"({store.complete_samples(src, 'raw') if store.has(src, 'raw') else 0} of {store.num_samples} "
                f"samples); run `fourm label {url} --modalities {src}` first"
            )
    job = f"fourm tokenize {url} --modalities {','.join(s.name for s in specs)}"
    with job_lock(url, dist, job, force=force) as lock:
        return _tokenize_locked(url, specs, codecs, dist, crops=crops, tokenizers_dir=tokenizers_dir, seed=seed,
                                overwrite=overwrite, batch_size=batch_size, device=device, progress=progress,
                                overwrite_crops=overwrite_crops, torch=torch, lock=lock)


def _tokenize_locked(url: str, specs: list[ModalitySpec], codecs: Mapping[str, Any], dist: Dist, *, crops: int,
                     tokenizers_dir: str | None, seed: int, overwrite: bool, batch_size: int, device: str,
                     progress: bool, overwrite_crops: bool, torch: Any, lock: Any) -> dict[str, JobReport]:
    store = Store.open(url, "r+")
    if dist.is_main:
        if overwrite_crops:
            dropped = store.reset_crops()
            if dropped:
                log.warning("tokenize: new crops; deleted the tokens of %s, which must be tokenized again", dropped)
        store.ensure_crops(crops, seed=seed, overwrite=False)
        for spec in specs:
            store.ensure_tokens(spec, crops, overwrite=overwrite, identity=tokenizer_identity(codecs[spec.name]),
                                tokenizer=os.fspath(tokenizers_dir) if tokenizers_dir else None)
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
    bar = progress_bar(total, "tokenize", progress and dist.is_main)
    try:
        crops_done = store.crops_done()
        for s in mine:
            rng = shards[s]
            lock.check()  # still this job's store (nobody took it over with --force)
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
                kill_point(f"tokenize:{spec.name}:{s}")
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
    default transform when it can crop (image-like raws), else None (no crop)."""
    if spec.transform is not None:
        return spec.transform.build(context={"raw_size": raw_size})
    t = getattr(codec, "transform", None)
    return t if t is not None and callable(getattr(t, "crop", None)) and adapter_for(spec).image_like else None


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
