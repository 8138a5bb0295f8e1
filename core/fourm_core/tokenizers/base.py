"""The tokenizer protocol and what every trainable family shares: config capture, input checks, save/load.

A *family* is an ``nn.Module`` whose constructor arguments are plain JSON values. They are captured as
``self.config`` and written to ``config.json`` (with the family's name under ``"family"``) next to
``model.safetensors`` by :meth:`PretrainedTokenizer.save_pretrained`; :func:`load_tokenizer` reads the
family back and rebuilds the module. Unknown config keys raise.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from fourm_registry.errors import FourmError
from fourm_registry.strict import check_keys

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

#: family name -> class; filled by :func:`register_family`
FAMILIES: dict[str, type[PretrainedTokenizer]] = {}


class TokenizerError(FourmError, ValueError):
    """A tokenizer was given bad input, a bad config or a bad directory."""


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer family provides (docs/architecture.md, "Tokenizers")."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def num_tokens(self) -> int: ...

    def encode(self, x: Any) -> torch.Tensor:
        """Token ids ``LongTensor (B, num_tokens)``."""

    def decode(self, tokens: torch.Tensor) -> Any:
        """Inverse of :meth:`encode` (a reconstruction for learned families)."""

    def loss(self, x: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss and metrics of a batch."""

    def save_pretrained(self, directory: str | os.PathLike) -> None: ...


def register_family(name: str):
    """Class decorator: make a family loadable by :func:`load_tokenizer` under ``name``."""

    def deco(cls: type[PretrainedTokenizer]) -> type[PretrainedTokenizer]:
        if name in FAMILIES and FAMILIES[name] is not cls:
            raise TokenizerError(f"tokenizer family {name!r} is already registered by {FAMILIES[name].__qualname__}")
        cls.family = name
        FAMILIES[name] = cls
        return cls

    return deco


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TokenizerError(f"tokenizer config values must be JSON values, got {type(value).__name__}: {value!r}")


class PretrainedTokenizer(nn.Module):
    """Base of the trainable families: config capture, naming, input validation, save/load."""

    family: ClassVar[str] = ""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config: dict[str, Any] = _jsonable(dict(config))

    # -- naming (error messages) -----------------------------------------------------------------
    @property
    def display_name(self) -> str:
        modality = self.config.get("modality")
        where = f" of modality {modality!r}" if modality else ""
        return f"{type(self).__name__} tokenizer{where}"

    def _input_error(self, problem: str, expected: str) -> TokenizerError:
        return TokenizerError(f"{self.display_name}: {problem}; expected {expected}")

    def _check_finite(self, x: torch.Tensor, expected: str) -> None:
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise self._input_error(f"input has {bad} NaN/inf values", f"finite values of shape {expected}")

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    # -- the protocol ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``loss(x)``: so that a wrapped (DDP) module trains through ``model(x)``."""
        return self.loss(x)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``config.json`` (with ``family``) into ``directory``, each atomically
        (temp file, fsync, rename: a kill leaves the old file or the new one, never a torn one)."""
        from safetensors.torch import save_file

        from ..data.atomic import atomic_path, write_text

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"family": self.family})
        write_text(path / CONFIG_NAME, json.dumps({"family": self.family, **self.config}, indent=2, sort_keys=True))
        logger.info("saved %s to %s", self.display_name, path)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PretrainedTokenizer:
        """Build an untrained module from a config dict (unknown keys raise)."""
        params = inspect.signature(cls.__init__).parameters
        known = {n for n, p in params.items() if n != "self" and p.kind is p.KEYWORD_ONLY}
        check_keys(config, sorted(known), f"{cls.__name__} config", error=TokenizerError)
        return cls(**config)

    @classmethod
    def from_pretrained(cls, directory_or_hub_id: str | os.PathLike, *, map_location: str = "cpu") -> PretrainedTokenizer:
        """Load a tokenizer saved by :meth:`save_pretrained` (a local directory or a Hugging Face hub id)."""
        model = load_tokenizer(directory_or_hub_id, map_location=map_location)
        if cls is not PretrainedTokenizer and not isinstance(model, cls):
            raise TokenizerError(
                f"{directory_or_hub_id}: holds a {type(model).__name__} (family {model.family!r}), not a {cls.__name__}; "
                f"use fourm_core.tokenizers.load_tokenizer to load any family"
            )
        return model


def _resolve_dir(directory_or_hub_id: str | os.PathLike, *, revision: str | None = None,
                 token: str | bool | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local directory, or the snapshot (config + weights only) of hub repo ``org/name`` at ``revision``."""
    path = Path(directory_or_hub_id)
    if path.is_dir():
        return path
    text = str(directory_or_hub_id)
    if path.exists() or text.startswith((".", "/")) or text.count("/") != 1:
        raise TokenizerError(
            f"tokenizer directory {text!r} does not exist; pass a directory written by save_pretrained "
            f"(model.safetensors + config.json) or a Hugging Face hub id 'org/name'"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, revision=revision, token=token, cache_dir=cache_dir,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as exc:  # noqa: BLE001 - offline machines: turn it into an actionable message
        raise TokenizerError(
            f"tokenizer {text!r} is not a local directory and could not be fetched from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). Download it elsewhere with `huggingface-cli download {text} "
            f"--local-dir DIR` and pass DIR instead"
        ) from exc


def load_tokenizer(directory_or_hub_id: str | os.PathLike, *, map_location: str = "cpu") -> PretrainedTokenizer:
    """Load any trainable family from a directory written by ``save_pretrained`` (dispatch on ``family``).

    A directory of the reference 4M release (a ``config.json`` without ``family``) loads as a
    :class:`fourm_core.tokenizers.ml4m.ReleasedTokenizer` (same protocol, inference only).
    """
    from safetensors.torch import load_file

    path = _resolve_dir(directory_or_hub_id)
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise TokenizerError(f"{path}: no {CONFIG_NAME}; is this a tokenizer directory written by save_pretrained?")
    with open(cfg_path, encoding="utf-8") as f:
        config = json.load(f)
    if isinstance(config, dict) and "family" not in config:  # the reference 4M release's hub format
        from .ml4m.hub import load_released

        return load_released(path, map_location=map_location)
    family = config.pop("family", None)
    if family not in FAMILIES:
        raise TokenizerError(
            f"{cfg_path}: unknown tokenizer family {family!r}; known families: {', '.join(sorted(FAMILIES))}"
        )
    model = FAMILIES[family].from_config(config)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise TokenizerError(f"{path}: {WEIGHTS_NAME} is missing (the {family} tokenizer's weights)")
    state = load_file(str(weights), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TokenizerError(
            f"{weights}: weights do not match the {family} config in {cfg_path}: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    model.eval()
    return model
