"""``inspect_store``: what a store holds per modality (completeness, dtype, shape, bytes, content hash)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .raw import is_text_array
from .store import Store


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
