"""What an evaluation run keeps in its output directory, so that an interrupted run resumes.

Layout of ``OUT/``::

    run.json                       what produced the predictions: model and tokenizer fingerprints, store,
                                   inputs, targets, generation settings (a resume must match it)
    parts/model/<start>-<stop>.npz the decoded predictions of samples start..stop-1, every target
    parts/oracle/<start>-<stop>.npz the tokenizer round trip of the references of those samples

A part is written atomically once all its samples are done (its existence is its completion flag), so a
killed run loses at most the part it was working on and never writes a sample twice. Image-like and vector
predictions are stacked arrays; other raws (text, JSON values) are stored as one JSON string. Parts are read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.atomic import atomic_path, write_text
from .errors import EvaluationError

RUN_FILE = "run.json"
PARTS = "parts"
MODES = ("model", "oracle")
_JSON_SUFFIX = ".json"


def part_path(out: Path, mode: str, start: int, stop: int) -> Path:
    return out / PARTS / mode / f"{start:09d}-{stop:09d}.npz"


def write_part(path: Path, raws: Mapping[str, Sequence[Any]]) -> None:
    """Persist ``{target: raws}`` of one chunk atomically."""
    arrays: dict[str, np.ndarray] = {}
    for name, values in raws.items():
        values = list(values)
        stacked = _stack(values)
        if stacked is not None:
            arrays[name] = stacked
        else:
            arrays[name + _JSON_SUFFIX] = np.array(json.dumps([jsonable(v) for v in values]))
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def read_part(path: Path) -> dict[str, list[Any]]:
    """``{target: raws}`` of one persisted chunk."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out: dict[str, list[Any]] = {}
            for key in data.files:
                if key.endswith(_JSON_SUFFIX):
                    out[key[: -len(_JSON_SUFFIX)]] = json.loads(str(data[key]))
                else:
                    out[key] = list(data[key])
            return out
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: a persisted prediction part cannot be read ({exc}); delete the file "
                              f"and run the same command again to recompute it") from exc


def _stack(values: list[Any]) -> np.ndarray | None:
    """One array when every raw is a numeric array of one shape, else None (stored as JSON)."""
    if not values or not all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in values):
        return None
    if len({(v.shape, v.dtype) for v in values}) != 1:
        return None
    return np.stack(values)


def jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def fingerprint(module: Any, extra: str = "") -> str:
    """A short hash of a torch module's parameters and buffers (names, shapes and per-tensor sums) and of
    ``extra``: what tells a resume that the model or tokenizer is still the one that wrote the parts."""
    import torch

    h = hashlib.sha256(extra.encode())
    with torch.no_grad():
        items = list(module.state_dict().items()) if hasattr(module, "state_dict") else []
        sums = [t.detach().double().sum() for _, t in items if isinstance(t, torch.Tensor)]
        values = torch.stack(sums).cpu().numpy() if sums else np.zeros(0)
    for name, t in items:
        h.update(f"{name}:{tuple(getattr(t, 'shape', ()))};".encode())
    h.update(np.asarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def check_run(out: Path, run: Mapping[str, Any], modes: Sequence[str], *, overwrite: bool) -> None:
    """Start or resume the run of ``OUT``: with ``overwrite`` the old parts go; otherwise an existing
    ``run.json`` must describe the same run for the parts of ``modes`` (the oracle only depends on the
    tokenizers, references and samples; the model parts on everything)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    if overwrite and (out / PARTS).exists():
        shutil.rmtree(out / PARTS)
    if not path.is_file() and any((out / PARTS).glob("*/*.npz")):
        raise EvaluationError(f"{out} holds predictions but no {RUN_FILE} saying what made them; pass --overwrite "
                              f"to recompute them, or choose another --out")
    if path.is_file() and not overwrite:
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path} is not valid JSON ({exc}); pass --overwrite to start over") from exc
        for mode in modes:
            if not any((out / PARTS / mode).glob("*.npz")):
                continue
            keys = _IDENTITY[mode]
            diff = sorted(k for k in keys if have.get(k) != run.get(k))
            if diff:
                details = "; ".join(f"{k}: {have.get(k)!r} then, {run.get(k)!r} now" for k in diff)
                raise EvaluationError(
                    f"{out} holds {mode} predictions of another run ({details}); pass --overwrite to recompute "
                    f"them, or choose another --out")
        merged = {**have, **run}
    else:
        merged = dict(run)
    write_text(path, json.dumps(merged, indent=2, sort_keys=True) + "\n")


#: the run.json fields each mode's parts depend on
_IDENTITY = {
    "oracle": ("store", "targets", "tokenizers"),
    "model": ("store", "targets", "tokenizers", "inputs", "model", "generation"),
}


def remove_stale_temporaries(out: Path) -> None:
    """Drop the temporaries a killed writer left in ``OUT/parts`` (they are never read)."""
    for tmp in (out / PARTS).glob("*/.*.tmp-*"):
        if tmp.is_file() and not _alive(tmp.name.rsplit("-", 1)[-1]):
            tmp.unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True
