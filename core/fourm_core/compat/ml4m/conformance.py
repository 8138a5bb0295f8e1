"""Reference checkpoints given as a state dict plus an explicit reference config (the parity sets' layout).

``config``: a dict, a ``config.json`` or its directory, with ``model`` + ``modalities`` sections (any modality
names: unknown ones get generic specs) or a released checkpoint's flat config (modalities from the table).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import Tensor

from fourm_registry import ModalitySet

from ...model import FourM
from .config import ML4MImportError, is_release_config, release_to_reference
from .release import build_from_reference


def read_config(config: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A reference config as a dict (from a dict, a ``config.json`` path or its directory)."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ML4MImportError(f"reference config {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ML4MImportError(f"reference config {path} is not valid JSON: {exc}") from None


def load_ml4m_checkpoint(path_or_state_dict: str | Path | Mapping[str, Tensor],
                         config: Mapping[str, Any] | str | Path,
                         *, installed: ModalitySet | None = None) -> FourM:
    """A :class:`FourM` holding the weights of a reference 4M checkpoint (e.g. to fine-tune it).

    ``path_or_state_dict``: a ``.safetensors`` file, a directory holding ``weights.safetensors`` /
    ``model.safetensors``, or a state dict. ``config``: the reference config (dict, ``config.json`` path or its
    directory). ``installed``: the modalities to map names through (default: the installed plugins).
    Released checkpoints load without an explicit config: :func:`fourm_core.compat.ml4m.load_release`."""
    ref = read_config(config)
    release = is_release_config(ref)
    if release:
        ref = release_to_reference(ref, str(config) if not isinstance(config, Mapping) else "reference config")
    elif "model" not in ref or "modalities" not in ref:
        raise ML4MImportError("reference config needs 'model' and 'modalities' sections (the reference's config "
                              "layout), or the flat config.json of a released checkpoint")
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
    else:
        p = Path(path_or_state_dict)
        if p.is_dir():
            cands = [p / "weights.safetensors", p / "model.safetensors"]
            p = next((c for c in cands if c.exists()), cands[0])
        if not p.exists():
            raise ML4MImportError(f"reference weights {p} not found")
        state = load_file(str(p))
    return build_from_reference(ref, state, installed=installed, missing="error" if release else "generic")


def mod_dict_from_reference(inputs: Mapping[str, Tensor], names: Mapping[str, str], *,
                            prefix: str = "") -> dict[str, dict[str, Tensor]]:
    """``[prefix]<ref>.<field>`` tensors → a mod_dict keyed by our modality names (other keys ignored when a
    prefix is given)."""
    out: dict[str, dict[str, Tensor]] = {}
    for key, value in inputs.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        ref, _, fld = key.rpartition(".")
        if ref not in names:
            raise ML4MImportError(f"input {key!r} names modality {ref!r}, which is not in the reference config")
        out.setdefault(names[ref], {})[fld] = value
    return out
