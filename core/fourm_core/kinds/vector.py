"""``vector``: a few token ids of a global vector (e.g. an embedding quantised by an MLP VQ), 1-D positions."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from fourm_registry import ModalitySpec

from ..errors import CheckpointError, GenerationError
from .base import TokenKind


class VectorKind(TokenKind):
    name = "vector"
    generation_defaults = {"scheme": "maskgit", "steps": 4, "temperature": 0.5, "token_schedule": "cosine",
                           "guidance": 1.0}

    def position_layout(self, spec: ModalitySpec, cfg: Any) -> tuple[int, ...]:
        return (spec.num_tokens,)

    def checkpoint_layout(self, spec: ModalitySpec, entry: dict[str, Any], name: str) -> dict[str, Any]:
        if entry.get("num_tokens") not in (None, spec.num_tokens):
            raise CheckpointError(f"checkpoint modality {name!r} has {entry['num_tokens']} tokens but the installed "
                                  f"{spec.plugin} {spec.version} has {spec.num_tokens}")
        return {}

    def encode_values(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        vecs = []
        for v in values:
            a = v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.number):
                raise GenerationError(f"input {spec.name!r}: expected a vector of shape (D,), got {a.dtype} {a.shape}")
            vecs.append(a.astype(np.float32))
        return api.codec_encode(api.codec(spec.name), spec, vecs)
