"""Released 4M checkpoints as they come: a hub id, a directory, or one ``.safetensors`` file.

Formats (detected, no conversion step):

* **release directory** (what ``PyTorchModelHubMixin.save_pretrained`` writes, and what a hub repo such as
  ``EPFL-VILAB/4M-21_XL`` holds): a flat ``config.json`` (``domains_in``, ``dim``, ...) and
  ``model.safetensors`` whose ``__metadata__`` maps dropped tied names to the kept ones;
* **single file**: one ``.safetensors`` whose ``__metadata__`` carries the config, one key per config entry,
  each value a YAML / Python literal string (``"['caption', 'rgb@224']"``, ``"768"``, ``"True"``);
* **conformance directory**: ``config.json`` with ``model`` + ``modalities`` sections and
  ``weights.safetensors`` / ``model.safetensors`` (the parity sets);
* a **fourm** checkpoint directory (``format_version``) is not handled here: :func:`detect` reports it and
  :func:`fourm_core.checkpoint.from_pretrained` loads it.

A hub id is resolved with ``huggingface_hub.snapshot_download`` (cache, ``revision``, ``token``,
``HF_HUB_OFFLINE``): only ``config.json``, ``*.safetensors`` and ``tokenizers/`` are fetched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from fourm_registry import ModalitySet

from ...model import FourM
from . import config as _config
from .config import ML4MImportError, model_config_from_reference, release_to_reference
from .modalities import modalities_from_reference
from .weights import load_reference_state_dict, to_reference_state_dict

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "weights.safetensors")
FORMATS = ("fourm", "release", "release_file", "conformance")


@attrs.frozen
class Located:
    """Where a checkpoint is on disk and which format it has."""

    path: Path  # a directory, or the file for ``release_file``
    format: str  # one of FORMATS


def looks_like_hub_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and not source.endswith("/")


def download(repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
             cache_dir: str | os.PathLike | None = None) -> Path:
    """The local snapshot of a hub repo (config, safetensors, tokenizers only). Offline-aware errors."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                      allow_patterns=[CONFIG_NAME, "*.safetensors", "tokenizers/*"]))
    except Exception as exc:  # noqa: BLE001 - re-raised with the fix
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        hint = ("HF_HUB_OFFLINE is set and the repo is not in the local cache" if offline
                else "the hub could not be reached")
        raise ML4MImportError(
            f"could not get the checkpoint {repo_id!r}{f' at revision {revision!r}' if revision else ''} from the "
            f"Hugging Face hub ({hint}; {type(exc).__name__}: {exc}). On a machine with network access run "
            f"`huggingface-cli download {repo_id} --local-dir DIR`, copy DIR here and pass its path") from exc


def _dir_format(d: Path) -> str:
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        raise ML4MImportError(f"{d} has no {CONFIG_NAME}: not a 4M checkpoint directory (a released one holds "
                              f"config.json and model.safetensors)")
    cfg = _read_json(cfg_path)
    if "format_version" in cfg:
        return "fourm"
    if _config.is_release_config(cfg):
        return "release"
    if "model" in cfg and "modalities" in cfg:
        return "conformance"
    raise ML4MImportError(f"{cfg_path}: neither a released 4M config (domains_in, dim, ...), a fourm checkpoint "
                          f"config (format_version) nor a reference config with 'model' and 'modalities'")


def locate(source: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
           cache_dir: str | os.PathLike | None = None) -> Located:
    """Find ``source`` (directory, ``.safetensors`` file or hub id) and detect its format."""
    p = Path(source).expanduser()
    if p.is_file():
        if p.suffix != ".safetensors":
            raise ML4MImportError(f"{p} is a file but not a .safetensors checkpoint; pass the checkpoint directory "
                                  f"(config.json + model.safetensors) or a single .safetensors with its config in "
                                  f"the metadata")
        return Located(p, "release_file")
    if p.is_dir():
        return Located(p, _dir_format(p))
    s = str(source)
    if not looks_like_hub_id(s):
        raise ML4MImportError(f"checkpoint {s} does not exist (nor is it a hub id like 'EPFL-VILAB/4M-21_B')")
    d = download(s, revision=revision, token=token, cache_dir=cache_dir)
    return Located(d, _dir_format(d))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ML4MImportError(f"{path} is not valid JSON ({exc}); re-download it") from None
    if not isinstance(data, dict):
        raise ML4MImportError(f"{path} must hold a JSON object")
    return data


def _weights_file(d: Path) -> Path:
    for name in WEIGHTS_NAMES:
        if (d / name).is_file():
            return d / name
    raise ML4MImportError(f"{d} has no {' or '.join(WEIGHTS_NAMES)}: the checkpoint's weights are missing")


def read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(state dict, raw ``__metadata__``) of a safetensors file, with a clear error for a damaged one."""
    try:
        with safe_open(str(path), "pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise ML4MImportError(f"{path} is not a readable safetensors file ({exc}); it is truncated or damaged: "
                              f"re-download it") from None


def _parse_literal(value: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(value.replace("None", "null"))
    except yaml.YAMLError:
        return value


def split_metadata(metadata: Mapping[str, str], state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(config entries, tied names dropped → kept) of a safetensors ``__metadata__``.

    Tied entries name tensors (the kept one is in ``state``); config entries are the FM keys fourm reads;
    everything else (``format``, training arguments) is ignored."""
    known = set(_config.RELEASE_KEYS) | set(_config.RELEASE_IGNORED)
    cfg, tied = {}, {}
    for key, value in metadata.items():
        if key in known:
            cfg[key] = _parse_literal(value) if isinstance(value, str) else value
        elif isinstance(value, str) and value in state and "." in key:
            tied[key] = value
    return cfg, tied


def read_release(loc: Located) -> tuple[dict[str, Any], dict[str, Any], dict[str, str], str]:
    """(flat config, state dict, tied names, where) of a release directory or single file."""
    if loc.format == "release_file":
        state, metadata = read_safetensors(loc.path)
        cfg, tied = split_metadata(metadata, state)
        if "domains_in" not in cfg:
            raise ML4MImportError(f"{loc.path}: its safetensors metadata holds no 4M config (no 'domains_in'); "
                                  f"pass the directory with its config.json instead")
        return cfg, state, tied, f"{loc.path} (metadata)"
    cfg_path = loc.path / CONFIG_NAME
    cfg = _read_json(cfg_path)
    state, metadata = read_safetensors(_weights_file(loc.path))
    return cfg, state, split_metadata(metadata, state)[1], str(cfg_path)


def build_from_reference(ref: Mapping[str, Any], state: Mapping[str, Any], *, installed: ModalitySet | None,
                         missing: str, tied: Mapping[str, str] | None = None,
                         model_class: type[FourM] = FourM) -> FourM:
    """A ``model_class`` from a reference config (conformance layout) and a reference state dict."""
    cfg = model_config_from_reference(ref["model"])
    mods, names, vocab = modalities_from_reference(ref, installed, missing=missing)
    model = model_class(mods, cfg, vocab_sizes=vocab)
    load_reference_state_dict(model, state, names, tied=tied)
    model.ml4m_names = dict(names)  # reference name -> our name, for callers mapping batches
    return model


def new_release_model(flat: Mapping[str, Any], *, installed: ModalitySet | None = None,
                      model_class: type[FourM] = FourM) -> FourM:
    """A freshly initialised model laid out as a released checkpoint's flat config describes (to train one in
    the reference's layout, or to build test models); :func:`save_release` writes it in that layout."""
    ref = release_to_reference(flat, "release config")
    mods, names, vocab = modalities_from_reference(ref, installed, missing="error")
    model = model_class(mods, model_config_from_reference(ref["model"]), vocab_sizes=vocab)
    model.ml4m_names, model.release_config = dict(names), dict(flat)
    return model


def load_release(source: str | os.PathLike | Located, *, installed: ModalitySet | None = None,
                 model_class: type[FourM] = FourM, revision: str | None = None, token: str | bool | None = None,
                 cache_dir: str | os.PathLike | None = None, map_location: str = "cpu") -> FourM:
    """A fourm model holding a released 4M checkpoint (hub id, release directory or single file), in eval mode.

    Every reference modality must be provided by an installed plugin (the error names it otherwise); the model
    keeps ``ml4m_names`` (reference name → fourm name) and ``release_config`` (the flat config)."""
    loc = source if isinstance(source, Located) else locate(source, revision=revision, token=token,
                                                            cache_dir=cache_dir)
    if loc.format not in ("release", "release_file"):
        raise ML4MImportError(f"{loc.path} is a {loc.format} checkpoint, not a released 4M one")
    flat, state, tied, where = read_release(loc)
    ref = release_to_reference(flat, where)
    model = build_from_reference(ref, state, installed=installed, missing="error", tied=tied,
                                 model_class=model_class)
    model.release_config = dict(flat)
    log.info("loaded released 4M checkpoint %s (%d parameters, modalities %s)", loc.path, model.num_parameters(),
             ", ".join(model.ml4m_names))
    return model.to(map_location).eval()


def save_release(model: FourM, directory: str | os.PathLike) -> Path:
    """Write ``model`` (loaded from a release, possibly fine-tuned) back in the release layout: the flat
    ``config.json`` and ``model.safetensors`` under the reference's key names (the reference can load it)."""
    flat = getattr(model, "release_config", None)
    names = getattr(model, "ml4m_names", None)
    if flat is None or names is None:
        raise ML4MImportError("save_release needs a model loaded with load_release (it keeps the released config "
                              "and the reference modality names); fourm models save with save_pretrained")
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    # parameters only: the reference rebuilds its sin-cos buffers and loads with strict=False
    state = {k: v.contiguous().cpu() for k, v in to_reference_state_dict(model, names, buffers=False).items()}
    tmp = d / "model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(d / "model.safetensors")
    (d / CONFIG_NAME).write_text(json.dumps(flat, sort_keys=True, indent=2))
    return d
