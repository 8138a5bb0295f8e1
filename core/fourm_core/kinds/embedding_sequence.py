"""``embedding_sequence``: a variable number of continuous vectors (e.g. T5 text embeddings), input only.

The encoder projects each ``(embed_dim,)`` row linearly; rows are left-aligned, absent rows are zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fourm_registry import ModalitySpec

from ..errors import GenerationError, ModDictError
from .base import KindAdapter


class EmbeddingSequenceKind(KindAdapter):
    name = "embedding_sequence"
    positions_count_visible = True
    mask_layout = "rows"

    def num_slots(self, spec: ModalitySpec) -> int:
        return spec.max_length

    def placeholder(self, spec: ModalitySpec) -> Tensor:
        return torch.zeros(spec.max_length, spec.embed_dim, dtype=torch.float32)

    def loader_tensor(self, spec: ModalitySpec, raw: Any, crop: Any, transform: Any) -> Tensor:
        return torch.from_numpy(np.asarray(raw, dtype=np.float32))

    def encoder_embedding(self, spec: ModalitySpec, cfg: Any, vocab_size: int | None) -> torch.nn.Module:
        from ..model.embeddings import ProjEncoderEmbedding

        return ProjEncoderEmbedding(spec, cfg)

    def check_model_tensor(self, spec: ModalitySpec, t: Tensor, vocab_size: int | None) -> int:
        if t.ndim != 3 or t.shape[2] != spec.embed_dim or not t.is_floating_point():
            raise ModDictError(f"mod_dict[{spec.name!r}]['tensor'] must be float (B, L, {spec.embed_dim}), "
                               f"got {t.dtype} {tuple(t.shape)}")
        return t.shape[1]

    def random_entry(self, spec: ModalitySpec, g: torch.Generator, batch: int, vocab_size: int | None) -> dict:
        n = spec.max_length
        k = torch.randint(1, n + 1, (batch, 1), generator=g)
        return {"tensor": torch.randn(batch, n, spec.embed_dim, generator=g), "input_mask": torch.arange(n)[None] >= k}

    def prepare_input(self, spec: ModalitySpec, t: Tensor, *, vocab_size: int | None,
                      sequence_mask: Any) -> tuple[Tensor, Tensor]:
        if t.ndim != 3 or t.shape[2] != spec.embed_dim:
            raise GenerationError(f"input {spec.name!r}: expected embeddings of shape (B, L, {spec.embed_dim}), "
                                    f"got {tuple(t.shape)}")
        t = t.float()
        return t, (t == 0).all(dim=-1)

    def empty_condition(self, t: Tensor, mask: Tensor, *, pad_id: int, first_sentinel_id: int) -> tuple[Tensor, Tensor]:
        """One visible all-zero row, the rest masked: the unconditional input the released 4M models were
        trained to read for an absent text embedding."""
        mask = torch.ones_like(mask)
        mask[:, 0] = False
        return torch.zeros_like(t), mask

    def encode_raw(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        """(L, D) float arrays, zero-padded to the spec's ``max_length``."""
        out = torch.zeros((len(values), spec.max_length, spec.embed_dim))
        for i, v in enumerate(values):
            a = torch.as_tensor(np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v), dtype=torch.float32)
            if a.ndim != 2 or a.shape[1] != spec.embed_dim or a.shape[0] > spec.max_length:
                raise GenerationError(f"input {spec.name!r}: expected (L <= {spec.max_length}, {spec.embed_dim}) "
                                        f"embeddings, got {tuple(a.shape)}")
            out[i, : a.shape[0]] = a
        return out
