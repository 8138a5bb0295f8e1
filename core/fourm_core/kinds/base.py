"""The interface every modality kind implements (:class:`KindAdapter`) and the checks the token kinds share.

A modality's *kind* (``ModalitySpec.kind``) decides how its data looks at every stage: what the store holds
for it, the placeholder of an absent sample, how a raw value becomes a tensor, how the model embeds it and
which checks a batch must pass. Core code asks the kind's adapter (:func:`fourm_core.kinds.adapter_for`)
instead of branching on the kind's name, so a new kind is one new module implementing this class.

Adapters are stateless singletons; every method takes the :class:`~fourm_registry.ModalitySpec` it works for.
The model's embedding modules and test builders are imported inside the methods that build them (the model
imports this package, not the other way round at import time).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from fourm_registry import ModalitySpec

from ..errors import GenerationError, ModDictError

__all__ = ["KindAdapter", "TokenKind", "check_id_range", "check_token_ids", "looks_like_ids", "to_numpy_image"]


class KindAdapter:
    """What one modality kind means to the data loader, the model, generation and the any-to-any API.

    Class attributes describe the kind; methods do the per-kind work. Subclasses override what differs.
    """

    #: the ``ModalitySpec.kind`` this adapter serves
    name: ClassVar[str] = ""
    #: token ids over a vocabulary: the model has a token table for it and can decode it
    discrete: ClassVar[bool] = False
    #: decoded left to right (causal within the modality, the shared text tokenizer, span masking)
    autoregressive: ClassVar[bool] = False
    #: encoder positions count the *visible* slots before a slot (variable-length, left-aligned content)
    #: instead of being the slot index
    positions_count_visible: ClassVar[bool] = False
    #: raw values are ``(H, W, C)`` arrays drawn as images when a plugin has no visualizer
    image_like: ClassVar[bool] = False
    #: raw inputs come from files (images, ``.npy``) rather than text / JSON on the command line
    raw_from_file: ClassVar[bool] = True
    #: raw images are RGB photos (image files are converted to RGB on loading)
    rgb_input: ClassVar[bool] = False
    #: the loader's raw data of this kind is cut with the sample's crop parameters (``loader_tensor``'s ``crop``)
    loader_uses_crop: ClassVar[bool] = False
    #: the masking layout of the kind (a key of ``fourm_core.masking``'s layout table)
    mask_layout: ClassVar[str] = "tokens"
    #: generation defaults of a target of this kind (``TargetConfig`` fields); empty: not a generation target
    generation_defaults: ClassVar[dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"<kind {self.name!r}>"

    # ------------------------------------------------------------------ data (stores, loader)
    def source_array(self, spec: ModalitySpec) -> tuple[str, str]:
        """``(array name, "raw" | "tokens")``: the store array that feeds ``spec`` in the training loader."""
        return (spec.name, "tokens") if self.discrete else ((spec.source or spec.name), "raw")

    def num_slots(self, spec: ModalitySpec) -> int:
        """Slots of a sample in the loader's tensor (tokens, patches or rows)."""
        raise NotImplementedError

    def placeholder(self, spec: ModalitySpec) -> Tensor:
        """The tensor of one absent sample: the shape and dtype a present one has, all zeros."""
        raise NotImplementedError

    def loader_tensor(self, spec: ModalitySpec, raw: Any, crop: Any, transform: Any) -> Tensor:
        """One training sample from a raw array of the store (kinds the loader reads as raw data).

        ``crop`` is the sample's ``(top, left, height, width, flip)`` crop row (None unless
        :attr:`loader_uses_crop`), ``transform`` the plugin's built transform (or None)."""
        raise NotImplementedError(f"kind {self.name!r} is read from tokens, not from raw data")

    def crop_size(self, spec: ModalitySpec) -> tuple[int, int] | None:
        """The (H, W) a crop of this kind is resized to when no tokenizer says otherwise, or None."""
        return None

    # ------------------------------------------------------------------ model
    def position_layout(self, spec: ModalitySpec, cfg: Any) -> tuple[int, ...]:
        """Shape of the kind's position table: ``(rows, cols)`` for a 2-D grid, ``(n,)`` for 1-D positions.

        The default (variable-length kinds): as many rows as the model config gives sequence-like modalities."""
        from ..model.embeddings import seq_table_rows

        return (seq_table_rows(spec, cfg),)

    def padding_idx(self) -> int | None:
        """Token id of padding in the kind's token tables (not trained), or None."""
        return None

    def encoder_embedding(self, spec: ModalitySpec, cfg: Any, vocab_size: int | None) -> torch.nn.Module:
        """The encoder embedding module of ``spec`` (see :mod:`fourm_core.model.embeddings`)."""
        from ..model.embeddings import TokenEncoderEmbedding

        return TokenEncoderEmbedding(spec, cfg, vocab_size)

    def check_model_tensor(self, spec: ModalitySpec, t: Tensor, vocab_size: int | None) -> int:
        """Check ``mod_dict[spec.name]["tensor"]`` for the model; return its number of slots.

        Raises :class:`ModDictError` naming the modality and the expected shape / dtype / id range."""
        raise NotImplementedError

    def random_entry(self, spec: ModalitySpec, g: torch.Generator, batch: int, vocab_size: int | None) -> dict:
        """A random masked ``mod_dict`` entry of this kind (tests, benchmarks)."""
        raise NotImplementedError

    def checkpoint_layout(self, spec: ModalitySpec, entry: dict[str, Any], name: str) -> dict[str, Any]:
        """Spec changes a checkpoint's saved modality ``entry`` asks for (e.g. another ``max_length``).

        Raises :class:`~fourm_core.checkpoint.CheckpointError` when the saved layout cannot be served by the
        installed plugin (another grid, another number of tokens)."""
        return {}

    # ------------------------------------------------------------------ generation
    def prepare_input(self, spec: ModalitySpec, t: Tensor, *, vocab_size: int | None,
                      sequence_mask: Any) -> tuple[Tensor, Tensor]:
        """A generation input tensor, checked and cast, and its default ``input_mask`` (True = not visible).

        Raises :class:`~fourm_core.generation.GenerationError` naming the modality and the expected shape.
        ``sequence_mask(ids)`` gives the visible part of text ids (used by sequence kinds)."""
        raise NotImplementedError

    def empty_condition(self, t: Tensor, mask: Tensor, *, pad_id: int, first_sentinel_id: int) -> tuple[Tensor, Tensor]:
        """The "no information" version of a condition (the unconditional pass of guidance): all masked."""
        return t, torch.ones_like(mask)

    def encode_raw(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        """Raw inputs of the any-to-any API (one per sample) → the batch tensor the sampler takes.

        ``api`` is the :class:`~fourm_core.pipeline.AnyToAny` (its codecs, transforms and resize helper)."""
        raise NotImplementedError


class TokenKind(KindAdapter):
    """Shared behaviour of fixed-length token kinds (``image``, ``vector``)."""

    discrete = True

    def num_slots(self, spec: ModalitySpec) -> int:
        return spec.num_tokens

    def placeholder(self, spec: ModalitySpec) -> Tensor:
        return torch.zeros(spec.num_tokens, dtype=torch.long)

    def check_model_tensor(self, spec: ModalitySpec, t: Tensor, vocab_size: int | None) -> int:
        n = check_token_ids(spec, t)
        if n != spec.num_tokens:
            raise ModDictError(f"mod_dict[{spec.name!r}]['tensor'] has {n} tokens per sample; modality "
                               f"{spec.name!r} has {spec.num_tokens}")
        check_id_range(spec, t, vocab_size)
        return n

    def random_entry(self, spec: ModalitySpec, g: torch.Generator, batch: int, vocab_size: int | None) -> dict:
        from ..model.testing import token_entry

        return token_entry(g, batch, spec.num_tokens, vocab_size, bool(spec.decoder))

    def prepare_input(self, spec: ModalitySpec, t: Tensor, *, vocab_size: int | None,
                      sequence_mask: Any) -> tuple[Tensor, Tensor]:
        if t.ndim != 2 or t.shape[1] != spec.num_tokens:
            raise GenerationError(f"input {spec.name!r}: expected token ids of shape (B, {spec.num_tokens}), "
                                    f"got {tuple(t.shape)}")
        if t.is_floating_point():
            raise GenerationError(f"input {spec.name!r}: token ids must be integers, got {t.dtype}")
        t = t.long()
        if t.min() < 0 or t.max() >= vocab_size:
            raise GenerationError(f"input {spec.name!r}: token ids must be in [0, {vocab_size})")
        return t, torch.zeros(t.shape, dtype=torch.bool, device=t.device)

    def encode_raw(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        if all(looks_like_ids(v) for v in values):
            ids = torch.stack([v.reshape(-1) for v in values])
            if ids.shape[1] != spec.num_tokens:
                raise GenerationError(f"input {spec.name!r}: token ids must have {spec.num_tokens} tokens, "
                                        f"got {ids.shape[1]}")
            return ids.long()
        return self.encode_values(spec, values, api)

    def encode_values(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        """Raw values (not token ids) → token ids through the modality's codec."""
        raise NotImplementedError


def looks_like_ids(value: Any) -> bool:
    """Token ids: an int16/32/64 tensor of shape (N,) or (1, N) (uint8 tensors are images)."""
    return (isinstance(value, torch.Tensor) and value.dtype in (torch.int16, torch.int32, torch.int64)
            and (value.ndim == 1 or (value.ndim == 2 and value.shape[0] == 1)))


def check_token_ids(spec: ModalitySpec, t: Tensor) -> int:
    """Integer ``(B, N)`` ids; returns N (raises :class:`ModDictError`)."""
    name = spec.name
    if t.ndim != 2 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ModDictError(f"mod_dict[{name!r}]['tensor'] must be integer token ids (B, N), "
                           f"got {t.dtype} {tuple(t.shape)}")
    return t.shape[1]


def check_id_range(spec: ModalitySpec, t: Tensor, vocab_size: int) -> None:
    """Every id of ``t`` is a row of the modality's vocabulary (raises :class:`ModDictError`)."""
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= vocab_size:
            raise ModDictError(f"mod_dict[{spec.name!r}]['tensor'] has token ids in [{lo}, {hi}] but the "
                               f"vocabulary of {spec.name!r} has {vocab_size} entries; was it tokenized with another "
                               f"tokenizer? (pass vocab_sizes= to build_model to match it)")


def to_numpy_image(value: Any, name: str) -> np.ndarray:
    """PIL / numpy / tensor → channels-last numpy array (H, W, C) (raises ``GenerationError`` naming ``name``)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(value, Image.Image):
        if value.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA", "1"):
            value = value.convert("RGB")
        value = np.asarray(value)
    elif isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif isinstance(value, (str, os.PathLike)) and Path(value).is_file():
        raise GenerationError(f"input {name!r}: got a file path {str(value)!r}; open it first (PIL.Image.open) "
                                f"or use the CLI's --in {name}=FILE")
    if not isinstance(value, np.ndarray):
        raise GenerationError(f"input {name!r}: expected an image (PIL image, numpy array or tensor), "
                                f"got {type(value).__name__}")
    if value.ndim == 2:
        value = value[..., None]
    if value.ndim != 3:
        raise GenerationError(f"input {name!r}: expected an image of shape (H, W) or (H, W, C), got {value.shape}")
    return value
