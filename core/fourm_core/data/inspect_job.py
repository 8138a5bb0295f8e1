"""``inspect_store``: what a store holds per modality (completeness, dtype, shape, bytes, content hash), every
done shard checked against its per-shard record; ``repair_store`` un-marks the damaged shards."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import records
from .errors import CorruptDataError
from .raw import is_text_array
from .store import Store


def _scan(store: Store, arr: Any, done: np.ndarray, problems: list[dict[str, Any]], counts: dict[str, int]) -> str:
    """sha256 of the done shards' values in sample order; each done shard is checked against its record (a
    damaged one is added to ``problems`` and left out of the hash)."""
    h = hashlib.sha256()
    text = is_text_array(arr)
    rec = store.shard_records(arr.path)
    for s, rng in enumerate(store.shards()):
        if not done[s] or not len(rng):
            continue
        row = rec[s] if rec is not None else np.zeros(2, np.uint64)
        reason = records.check_object(arr, s, row)
        if reason is None:
            try:
                data = store._read(arr, np.arange(rng.start, rng.stop))  # noqa: SLF001 - same package
            except CorruptDataError as exc:
                reason = f"it cannot be decoded ({exc})"
            else:
                reason = records.check_values(data, text, row)
        if reason is not None:
            problems.append({"array": arr.path, "shard": s, "samples": [rng.start, rng.stop], "reason": reason})
            continue
        counts["verified" if int(row[0]) else "unverified"] += 1
        records.update_hash(h, data, text)
    return h.hexdigest()


def _array_info(store: Store, name: str, what: str, arr: Any, problems: list[dict[str, Any]],
                counts: dict[str, int]) -> dict[str, Any]:
    done = store.done(name, what) if what != "crops" else store.crops_done()
    text = is_text_array(arr)
    complete = int(sum(len(r) for r, d in zip(store.shards(), done) if d))
    return {
        "complete": complete,
        "dtype": "json" if text else str(np.dtype(arr.dtype)),
        "shape": list(arr.shape[1:]),
        "bytes": int(arr.nbytes_stored()),
        "sha256": _scan(store, arr, done, problems, counts),
    }


def inspect_store(url: str) -> dict[str, Any]:
    """Per modality: complete samples, dtype, per-sample shape, bytes stored and sha256 of the values.

    ``modalities[name]`` describes ``<name>/raw`` (or ``<name>/tokens`` when the modality has no raw array,
    e.g. ``tok_rgb``), and ``modalities[name]["tokens"]`` describes ``<name>/tokens`` when it exists. The
    hash covers the complete shards only, in sample order, so two stores with the same content compare equal
    however they were written.

    Every done shard is checked against the record written with it (stored object present and of the recorded
    size, values with the recorded digest); ``problems`` lists the damaged ones (``array``, ``shard``,
    ``samples``, ``reason``), which the hashes leave out. ``verified_shards`` / ``unverified_shards`` count the
    done shards checked against a record / without one (marked by an older fourm). ``lock`` is the writer
    lock's holder (a job writing the store now, or a stale lock), else None.
    """
    from .lock import WriterLock

    store = Store.open(url, "r")
    names = set(store.modalities())
    for gname, _ in store._group.groups():  # noqa: SLF001 - same package
        if not gname.startswith("_"):
            names.add(gname)
    out: dict[str, Any] = {"num_samples": store.num_samples, "format_version": store.format_version,
                           "samples_per_shard": store.samples_per_shard, "raw_size": store.raw_size,
                           "modalities": {}}
    problems: list[dict[str, Any]] = []
    counts = {"verified": 0, "unverified": 0}
    meta = store.modalities()
    for name in sorted(names):
        entry: dict[str, Any] = {}
        info = meta.get(name, {})
        entry["plugin"], entry["version"] = info.get("plugin"), info.get("version")
        tok = (_array_info(store, name, "tokens", store.array(name, "tokens"), problems, counts)
               if store.has(name, "tokens") else None)
        entry["has_raw"] = store.has(name, "raw")
        if entry["has_raw"]:
            entry.update(_array_info(store, name, "raw", store.array(name, "raw"), problems, counts))
        elif tok is not None:
            entry.update(tok)
        if tok is not None:
            entry["tokens"] = tok
        out["modalities"][name] = entry
    if store.num_crops:
        arr = store._array("_crops/params")  # noqa: SLF001
        out["crops"] = _array_info(store, "_crops", "crops", arr, problems, counts)
        out["crops"]["num_crops"] = store.num_crops
    out["problems"] = problems
    out["verified_shards"], out["unverified_shards"] = counts["verified"], counts["unverified"]
    out["lock"] = WriterLock.holder(url)
    return out


def _redo_command(url: str, path: str) -> str:
    """The command that redoes a shard of array ``path`` once it is not marked done."""
    name, _, what = path.partition("/")
    if name == "_crops":
        return f"fourm tokenize {url} --modalities MODS --tokenizers DIR (every tokenized modality)"
    if what == "tokens":
        return f"fourm tokenize {url} --modalities {name} --tokenizers DIR"
    return f"fourm ingest SRC {url}" if name == "rgb" else f"fourm label {url} --modalities {name}"


def damage_error(url: str, problems: list[dict[str, Any]]) -> CorruptDataError:
    """The error ``fourm inspect`` ends with when shards are damaged."""
    first = problems[0]
    return CorruptDataError(
        f"store {url}: {len(problems)} done shard(s) are damaged, first shard {first['shard']} of "
        f"{first['array']!r} (samples {first['samples'][0]}..{first['samples'][1] - 1}): {first['reason']}. Run "
        f"`fourm inspect {url} --repair` to mark them not done, then `{_redo_command(url, first['array'])}` to "
        f"redo them"
    )


def repair_store(url: str, *, force: bool = False) -> dict[str, Any]:
    """Un-mark every damaged shard :func:`inspect_store` finds (holding the writer lock), so that the job that
    wrote it redoes it. Returns ``inspect_store``'s result with ``repaired``: the un-marked shards and, per
    array, the command that redoes them."""
    from .lock import WriterLock

    with WriterLock.acquire(url, f"fourm inspect {url} --repair", force=force):
        info = inspect_store(url)
        store = Store.open(url, "r+")
        for p in info["problems"]:
            path = p["array"]
            if path == "_crops/params":
                # tokens were cut with these crops: redo them too
                store._finish("_crops/params", p["shard"], False)  # noqa: SLF001
                for name in store.modalities():
                    if store.has(name, "tokens"):
                        store.mark_done(name, "tokens", p["shard"], False)
            else:
                store._finish(path, p["shard"], False)  # noqa: SLF001
        info["repaired"] = [{**p, "redo": _redo_command(url, p["array"])} for p in info["problems"]]
        info["lock"] = None
    return info


def format_inspect(info: Mapping[str, Any]) -> str:
    """Human-readable table of :func:`inspect_store`'s result."""
    lines = [f"samples: {info['num_samples']}  (shards of {info['samples_per_shard']}, raw size {info['raw_size']}, "
             f"format v{info['format_version']})"]
    for name, e in info["modalities"].items():
        lines.append(f"{name:<18} {e.get('complete', 0):>7}/{info['num_samples']} {e.get('dtype')!s:<8} "
                     f"{str(tuple(e.get('shape') or ())):<16} {e.get('bytes', 0) / 1e6:9.2f} MB  {e.get('sha256', '')[:16]}")
        if "tokens" in e and e.get("has_raw", True):  # a tokens-only modality's line already is its tokens
            t = e["tokens"]
            lines.append(f"{'  tokens':<18} {t['complete']:>7}/{info['num_samples']} {t['dtype']:<8} "
                         f"{str(tuple(t['shape'])):<16} {t['bytes'] / 1e6:9.2f} MB  {t['sha256'][:16]}")
    if "crops" in info:
        c = info["crops"]
        lines.append(f"{'_crops':<18} {c['complete']:>7}/{info['num_samples']} crops={c['num_crops']}  {c['sha256'][:16]}")
    if "verified_shards" in info:
        lines.append(f"shards checked against their records: {info['verified_shards']}"
                     + (f" (+{info['unverified_shards']} without a record)" if info.get("unverified_shards") else ""))
    for p in info.get("repaired", ()):
        lines.append(f"REPAIRED {p['array']} shard {p['shard']}: marked not done ({p['reason']}); redo: {p['redo']}")
    if not info.get("repaired"):
        for p in info.get("problems", ()):
            lines.append(f"DAMAGED {p['array']} shard {p['shard']} (samples {p['samples'][0]}..{p['samples'][1] - 1}): "
                         f"{p['reason']}")
    if info.get("lock"):
        from .lock import describe

        lines.append(f"locked by {describe(info['lock'])}")
    return "\n".join(lines)


__all__ = ["damage_error", "format_inspect", "inspect_store", "repair_store"]
