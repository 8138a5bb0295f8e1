"""The identity of what writes an array: a hash of the labeler's weights and config, or of the tokenizer.

A resumed ``fourm label`` / ``fourm tokenize`` must write the remaining shards with the same labeler or
tokenizer as the finished ones; otherwise one array silently holds the values of two models. The jobs compute an
identity ``{"sha256": HEX, "parts": {...}}`` and the store records it in the array's attributes
(:meth:`Store.ensure_raw`, :meth:`Store.ensure_tokens`); a resume with another one is refused.

* weights: a local file is hashed by content, a local directory by the relative paths and contents of its
  files; anything else (a hub id) by its name;
* a labeler: its factory (``module:attr``), the extra keyword arguments it is built with, and its weights;
* a tokenizer: its family/config and every tensor of its ``state_dict`` (name, dtype, shape, bytes); a sequence
  tokenizer also its text vocabulary, its serializer's class and the serializer's plain settings (numbers,
  strings).

A leaf module: no zarr import.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def _sha256_file(path: Path, h: Any) -> None:
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)


def weights_identity(weights: str | os.PathLike[str] | None) -> str | None:
    """``sha256:HEX`` of local weights (a file or a directory), ``name:ID`` for a hub id, None for none."""
    if weights is None:
        return None
    p = Path(weights)
    if not p.exists():
        return f"name:{os.fspath(weights)}"
    h = hashlib.sha256()
    if p.is_file():
        _sha256_file(p, h)
    else:
        for f in sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            _sha256_file(f, h)
    return f"sha256:{h.hexdigest()}"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def _finish(parts: Mapping[str, Any]) -> dict[str, Any]:
    parts = _jsonable(dict(parts))
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, "parts": parts}


def labeler_identity(target: str, weights: str | os.PathLike[str] | None,
                     kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The identity of a pseudo-labeler: factory, build keyword arguments (not the batch size), weights."""
    return _finish({"labeler": target, "kwargs": dict(kwargs or {}), "weights": weights_identity(weights)})


def _module_digest(module: Any, h: Any) -> bool:
    state = getattr(module, "state_dict", None)
    if not callable(state):
        return False
    import torch

    for key, tensor in sorted(state().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return True


def tokenizer_identity(codec: Any) -> dict[str, Any]:
    """The identity of a modality codec's tokenizer (see the module docstring)."""
    tok = getattr(codec, "tokenizer", codec)
    h = hashlib.sha256()
    has_weights = _module_digest(tok, h)
    parts: dict[str, Any] = {"class": f"{type(tok).__module__}.{type(tok).__qualname__}",
                             "config": getattr(tok, "config", None)}
    text = getattr(tok, "text_tokenizer", None)
    inner = getattr(text, "tokenizer", None)
    if inner is not None and callable(getattr(inner, "to_str", None)):
        h.update(inner.to_str().encode())
        has_weights = True
    for attr in ("max_length", "vocab_size"):
        if isinstance(getattr(tok, attr, None), int):
            parts[attr] = getattr(tok, attr)
    serializer = getattr(codec, "serializer", None)
    if serializer is not None:
        parts["serializer"] = f"{type(serializer).__module__}.{type(serializer).__qualname__}"
        parts["serializer_config"] = {k: v for k, v in sorted(vars(serializer).items())
                                      if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
    parts["weights"] = f"sha256:{h.hexdigest()}" if has_weights else None
    return _finish(parts)


def mismatch_message(url: str, path: str, have: Mapping[str, Any], want: Mapping[str, Any]) -> str:
    """The error for resuming ``path`` with another identity: what differs and how to proceed."""
    hp, wp = dict(have.get("parts") or {}), dict(want.get("parts") or {})
    diff = [f"{k}: {hp.get(k)!r} -> {wp.get(k)!r}" for k in sorted(set(hp) | set(wp)) if hp.get(k) != wp.get(k)]
    name = path.split("/")[0]
    job = "fourm tokenize" if path.endswith("tokens") else "fourm label"
    return (
        f"store {url}: {path} has finished shards written by another "
        f"{'tokenizer' if job == 'fourm tokenize' else 'labeler'} (identity {str(have.get('sha256'))[:12]}, this "
        f"run {str(want.get('sha256'))[:12]}; {'; '.join(diff) or 'details differ'}). Resuming would mix the two in "
        f"one array: rerun with the original one, or pass --overwrite (`{job} {url} --modalities {name} "
        f"--overwrite ...`) to redo {path} from scratch"
    )


__all__ = ["labeler_identity", "mismatch_message", "tokenizer_identity", "weights_identity"]
