"""Saving and loading :class:`fourm_core.model.FourM` checkpoints.

A checkpoint directory holds ``model.safetensors`` (the state dict; sin-cos tables are rebuilt, not stored)
and ``config.json``::

    {"format_version": 1,
     "model": {...ModelConfig fields...},
     "modalities": [{"name", "plugin", "version", "kind", "vocab_size", "num_tokens", "grid", "max_length",
                     "patch_size", "channels", "embed_dim", "pos_emb", "encoder", "decoder", "aliases"}, ...],
     "vocab_sizes": {name: size}}

Loading rebuilds the :class:`ModalitySet` from the installed plugins (``fourm_registry.get_modalities()``):
a modality whose plugin is missing raises an error naming it and the distribution to ``pip install``. Other
files in the directory (e.g. the trainers' ``tokenizers/``) are left alone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch
from safetensors.torch import load_file, save_file

from fourm_registry import ModalitySet, ModalitySpec, UnknownModalityError
from fourm_registry.strict import check_keys

from .errors import CheckpointError
from .kinds import adapter_for
from .model.config import ConfigError, ModelConfig

if TYPE_CHECKING:
    from .model import FourM

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_TOP_KEYS = ("format_version", "model", "modalities", "vocab_sizes")
_SPEC_KEYS = ("name", "plugin", "version", "kind", "vocab_size", "num_tokens", "grid", "max_length", "patch_size",
              "channels", "embed_dim", "pos_emb", "encoder", "decoder", "aliases")
#: plugin marker of modalities synthesized by ``fourm_core.compat`` (rebuilt from the checkpoint itself)
SYNTHESIZED_PLUGIN = "fourm-core (ml4m import)"
_SERIALIZER = "fourm_core.compat.serializer:PlainTextSerializer"


def _spec_entry(spec: ModalitySpec) -> dict[str, Any]:
    return {
        "name": spec.name, "plugin": spec.plugin, "version": spec.version, "kind": spec.kind,
        "vocab_size": spec.vocab_size, "num_tokens": spec.num_tokens,
        "grid": list(spec.grid) if spec.grid else None, "max_length": spec.max_length,
        "patch_size": spec.patch_size, "channels": spec.channels, "embed_dim": spec.embed_dim,
        "pos_emb": spec.pos_emb, "encoder": spec.encoder, "decoder": spec.decoder, "aliases": list(spec.aliases),
    }


def checkpoint_config(model: FourM) -> dict[str, Any]:
    """The ``config.json`` content for ``model``."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "modalities": [_spec_entry(s) for s in model.modalities.specs],
        "vocab_sizes": dict(model.vocab_sizes),
    }


def save_pretrained(model: FourM, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Each file is written atomically (temp file, fsync, rename): a kill leaves the old file or the new one."""
    from .data.atomic import atomic_path, write_text

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(d / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "fourm_format_version": str(FORMAT_VERSION)})
    write_text(d / CONFIG_NAME, json.dumps(checkpoint_config(model), indent=1, sort_keys=True))
    log.info("saved %s (%d parameters) to %s", type(model).__name__, model.num_parameters(), d)
    return d


def _resolve_dir(dir_or_hub_id: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    p = Path(dir_or_hub_id)
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"{p} is a file; pass the checkpoint directory (with {CONFIG_NAME} and {WEIGHTS_NAME})"
                                  f" or a single released .safetensors file")
        return p
    s = str(dir_or_hub_id)
    looks_like_hub = s.count("/") == 1 and not s.startswith((".", "/", "~")) and not s.endswith("/")
    if not looks_like_hub:
        raise CheckpointError(f"checkpoint directory {s} does not exist (nor is it a hub id like 'org/name')")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=s, revision=revision, token=token, cache_dir=cache_dir,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "tokenizers/*"]))
    except Exception as exc:  # noqa: BLE001 - re-raised with instructions
        raise CheckpointError(
            f"could not get the checkpoint {s!r}{f' (revision {revision!r})' if revision else ''} from the Hugging "
            f"Face hub ({type(exc).__name__}: {exc}). On a machine with network access run `huggingface-cli download "
            f"{s} --local-dir <DIR>`, copy <DIR> here and pass its path to from_pretrained (or unset HF_HUB_OFFLINE "
            f"if you are online)"
        ) from exc


def checkpoint_format(path: Path) -> str:
    """``"fourm"``, ``"release"`` (a released 4M checkpoint: flat hub config.json), ``"release_file"`` (one
    ``.safetensors`` with its config in the metadata) or ``"conformance"`` (reference config with ``model`` and
    ``modalities``) for a local file or directory; ``"fourm"`` when nothing identifies another format."""
    if path.is_file() and path.suffix == ".safetensors":
        return "release_file"
    cfg_path = path / CONFIG_NAME
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError):
        return "fourm"  # read_config reports what is wrong
    if not isinstance(cfg, dict) or "format_version" in cfg:
        return "fourm"
    if "domains_in" in cfg and "model" not in cfg:
        return "release"
    if "model" in cfg and "modalities" in cfg and isinstance(cfg["modalities"], dict):
        return "conformance"
    return "fourm"


def _rebuild_spec(entry: Mapping[str, Any], installed: ModalitySet) -> ModalitySpec:
    name = entry["name"]
    if entry.get("plugin") == SYNTHESIZED_PLUGIN and name not in installed:
        kw = {k: entry[k] for k in _SPEC_KEYS if k in entry and entry[k] is not None and k not in ("version",)}
        if kw.get("kind") == "sequence":
            kw["serializer"] = _SERIALIZER
        return ModalitySpec(**kw)
    try:
        spec = installed[name]
    except UnknownModalityError:
        plugin = entry.get("plugin") or f"fourm-{name.replace('_', '-')}"
        raise CheckpointError(
            f"the checkpoint uses modality {name!r} (plugin {plugin} {entry.get('version') or ''}), which no installed "
            f"plugin provides; install it with `pip install {plugin}`"
        ) from None
    if spec.name != name:
        raise CheckpointError(f"checkpoint modality {name!r} is an alias of the installed {spec.name!r}; "
                              f"re-save the checkpoint with the current modality names")
    if spec.kind != entry.get("kind"):
        raise CheckpointError(f"checkpoint modality {name!r} is a {entry.get('kind')!r} modality but the installed "
                              f"{spec.plugin} {spec.version} declares kind {spec.kind!r}")
    changes: dict[str, Any] = {}
    for key in ("encoder", "decoder", "pos_emb"):
        if key in entry and entry[key] is not None and entry[key] != getattr(spec, key):
            changes[key] = entry[key]
    changes.update(adapter_for(spec).checkpoint_layout(spec, entry, name))
    if changes:
        spec = attrs.evolve(spec, **changes)
    return spec


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint directory (unknown keys raise)."""
    path = Path(directory) / CONFIG_NAME
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: is {directory} a fourm checkpoint directory?") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    check_keys(cfg, _TOP_KEYS, str(path), error=CheckpointError)
    if cfg.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {cfg.get('format_version')!r} is not supported (this fourm "
                              f"reads {FORMAT_VERSION}); upgrade fourm-core")
    for i, entry in enumerate(cfg.get("modalities", [])):
        check_keys(entry, _SPEC_KEYS, f"{path}: modalities[{i}] has", error=CheckpointError, sep=" ")
    return cfg


def from_pretrained(dir_or_hub_id: str | os.PathLike, *, model_class: type[FourM], modalities: ModalitySet | None = None,
                    map_location: str | torch.device = "cpu", revision: str | None = None,
                    token: str | bool | None = None, cache_dir: str | os.PathLike | None = None) -> FourM:
    """Load a ``model_class`` (:class:`FourM`) from a directory or a hub id (the model calls this from
    :meth:`FourM.from_pretrained`; this module never imports the model class).

    Formats (detected): a fourm checkpoint written by :func:`save_pretrained`; a released 4M checkpoint (the
    reference's hub layout: flat ``config.json`` + ``model.safetensors``, or one ``.safetensors`` whose metadata
    holds the config; see :mod:`fourm_core.compat.ml4m`); a reference state dict with a ``model`` +
    ``modalities`` config. ``revision`` / ``token`` / ``cache_dir`` go to ``huggingface_hub`` for hub ids.
    ``modalities``: where to look the checkpoint's modalities up (default: the installed plugins)."""
    p = Path(dir_or_hub_id)
    d = p if p.is_file() and p.suffix == ".safetensors" else _resolve_dir(dir_or_hub_id, revision=revision,
                                                                          token=token, cache_dir=cache_dir)
    fmt = checkpoint_format(d)
    if fmt in ("release", "release_file"):
        from .compat.ml4m.release import Located, load_release

        return load_release(Located(d, fmt), installed=modalities, model_class=model_class,
                            map_location=str(map_location))
    if fmt == "conformance":
        from .compat.ml4m.conformance import load_ml4m_checkpoint

        return load_ml4m_checkpoint(d, d, installed=modalities).to(map_location)
    cfg = read_config(d)
    try:
        model_cfg = ModelConfig.from_dict(cfg["model"])
    except ConfigError as exc:
        raise CheckpointError(f"{d / CONFIG_NAME}: {exc}") from exc
    if modalities is None:
        from fourm_registry import get_modalities

        modalities = get_modalities()
    specs = ModalitySet(_rebuild_spec(e, modalities) for e in cfg["modalities"])
    model = model_class(specs, model_cfg, vocab_sizes=cfg.get("vocab_sizes") or {})
    wpath = d / WEIGHTS_NAME
    if not wpath.exists():
        raise CheckpointError(f"{wpath} not found: the checkpoint directory {d} has no weights")
    state = load_file(str(wpath), device=str(map_location))
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (the model has {tuple(expected[k].shape)})"
             for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(f"{wpath} does not fit the model described by its config.json: shape mismatch "
                              f"{wrong[:8]}")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{wpath} does not fit the model described by its config.json: missing "
                              f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}")
    return model.to(map_location)
