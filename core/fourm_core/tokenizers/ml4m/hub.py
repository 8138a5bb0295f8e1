"""Load / save released tokenizers (hub format: a flat ``config.json`` + ``model.safetensors``), and the adapter
that gives them fourm's tokenizer protocol.

* :func:`from_pretrained` — a local directory or a Hugging Face hub id (``snapshot_download`` of the two files;
  honours the cache, ``revision``, ``token`` and ``HF_HUB_OFFLINE``) → an eval-mode :class:`VQVAE` /
  :class:`DiVAE` (detected from the config, :func:`.config.model_type`), or the encoder half alone
  (``encoder_only=True``, a :class:`VQ`; needs no decoder code). Weights load strictly: missing, unexpected
  or mis-shaped tensors raise :class:`TokenizerError` naming them and both files.
* :func:`save_pretrained` — writes the same format back (keys sorted, 2-space indent, no trailing newline).
* :class:`ReleasedTokenizer` — fourm's protocol on top of a loaded model: ``encode(x) -> (B, num_tokens)`` flat
  ids (row-major grid; head-major for multi-head memcodes), ``decode(ids)`` → raw values. This is what
  :func:`fourm_core.tokenizers.load_tokenizer` returns for a released directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base import CONFIG_NAME, WEIGHTS_NAME, TokenizerError, _resolve_dir
from .config import DIVAE_KEYS, VQVAE_KEYS, model_type
from .vqvae import MODEL_CLASSES, VQ, DiVAE

_ENCODER_PREFIXES = ("cls_emb.", "encoder.", "quant_proj.", "quantize.")


def resolve_dir(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
                cache_dir: str | os.PathLike | None = None) -> Path:
    """A local tokenizer directory, or the snapshot of hub repo ``org/name`` holding its two files."""
    return _resolve_dir(name_or_path, revision=revision, token=token, cache_dir=cache_dir)


def read_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise TokenizerError(f"{directory}: no {CONFIG_NAME}; a released tokenizer directory holds {CONFIG_NAME} "
                             f"and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TokenizerError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise TokenizerError(f"{cfg_path}: expected a JSON object, got {type(config).__name__}")
    return config


def load_weights_strict(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` (built on any device, meta included); every key must match in name and shape."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing {missing[:6]}" if missing else "",
                 f"{len(unexpected)} unexpected {unexpected[:6]}" if unexpected else "",
                 f"{len(shapes)} of another shape {shapes[:4]}" if shapes else ""]
        raise TokenizerError(f"{where}: the weights do not fit the model its config describes: "
                             f"{'; '.join(p for p in parts if p)}. Is the config.json the one saved with these "
                             f"weights?")
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                          strict=True, assign=True)


def _build(cls: type[VQ], config: Mapping[str, Any], where: str) -> VQ:
    """Build without initialising weights (meta device) when the whole state comes from the file."""
    with torch.device("meta"):
        return cls(config, where=where)


def from_pretrained(name_or_path: str | os.PathLike, *, encoder_only: bool = False,
                    map_location: str | torch.device = "cpu",
                    revision: str | None = None, token: str | bool | None = None,
                    cache_dir: str | os.PathLike | None = None) -> VQ:
    """Load a released tokenizer (see the module docstring); the result is in eval mode on ``map_location``."""
    from safetensors.torch import load_file

    directory = resolve_dir(name_or_path, revision=revision, token=token, cache_dir=cache_dir)
    config = read_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise TokenizerError(f"{directory}: {WEIGHTS_NAME} is missing (the tokenizer's weights)")
    where = str(directory / CONFIG_NAME)
    kind = model_type(config)
    cls = VQ if encoder_only else MODEL_CLASSES[kind]
    model = _build(cls, config, where)
    state = load_file(str(weights))
    if encoder_only:
        state = {k: v for k, v in state.items() if k.startswith(_ENCODER_PREFIXES)}
    load_weights_strict(model, state, f"{weights} with {where}")
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # tensors a module keeps outside its state dict: build it for real and load again
        model = cls(config, where=where)
        load_weights_strict(model, state, f"{weights} with {where}")
    model.source_config = dict(config)
    return model.to(map_location).eval()


def save_pretrained(model: VQ, directory: str | os.PathLike) -> Path:
    """Write ``model`` as a released tokenizer directory: ``config.json`` (the config it was built from plus
    its class's decoder defaults; keys sorted) and ``model.safetensors`` (the full state dict, float32)."""
    from safetensors.torch import save_file

    if not isinstance(model, VQ) or model.model_type == "VQ":
        raise TokenizerError(f"save_pretrained needs a VQVAE or DiVAE, got {type(model).__name__} "
                             f"(an encoder-only model cannot be reloaded as a tokenizer)")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    source = getattr(model, "source_config", None) or {k: v for k, v in model.config.items()}
    defaults = VQVAE_KEYS if model.model_type == "VQVAE" else DIVAE_KEYS
    config = {**defaults, **source}
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_NAME))
    (path / CONFIG_NAME).write_text(json.dumps(config, sort_keys=True, indent=2), encoding="utf-8")
    return path


class ReleasedTokenizer(nn.Module):
    """fourm's tokenizer protocol for a released :class:`VQVAE` / :class:`DiVAE` (inference only).

    ``encode(x)`` → (B, num_tokens) int64 (the model's token grid flattened row-major, heads slowest);
    ``decode(ids)`` → images / maps (B, C, H, W), class probabilities (softmax of the logits) (B, n_labels, H, W)
    for class maps, or (B, C) vectors for MLP (global) tokenizers. ``decode_options`` are passed to a DiVAE's
    ``decode_tokens`` (``steps``, ``scheduler``, ``generator``, ...).
    """

    family = "ml4m_release"

    def __init__(self, model: VQ, *, decode_options: Mapping[str, Any] | None = None):
        super().__init__()
        self.model = model
        self.decode_options = dict(decode_options or {})
        self.config = {"num_classes": model.n_labels, **model.config}

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def num_tokens(self) -> int:
        return self.model.num_tokens

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_global(self) -> bool:
        return self.model.enc_arch.kind == "mlp"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.model.encode(x)
        return tokens.reshape(tokens.shape[0], -1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.shape[1] != self.num_tokens:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise TokenizerError(f"{type(self.model).__name__} tokenizer: got tokens {shape}; expected "
                                 f"(B, {self.num_tokens}) int64 ids in [0, {self.vocab_size})")
        ids = tokens.reshape(tokens.shape[0], *self.model.token_shape)
        if isinstance(self.model, DiVAE):
            out = self.model.decode_tokens(ids, **self.decode_options)
        else:
            out = self.model.decode_tokens(ids)
        if self.model.n_labels is not None:
            return out.softmax(dim=1)
        return out.flatten(1) if self.is_global else out

    def loss(self, x: Any):
        raise TokenizerError("released tokenizers are loaded for inference only: fourm does not train them "
                             "(train a fourm family, e.g. vit_vqvae, instead)")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        save_pretrained(self.model, directory)


def load_released(name_or_path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                  **kwargs: Any) -> ReleasedTokenizer:
    """:func:`from_pretrained` wrapped in :class:`ReleasedTokenizer`."""
    return ReleasedTokenizer(from_pretrained(name_or_path, map_location=map_location, **kwargs))
