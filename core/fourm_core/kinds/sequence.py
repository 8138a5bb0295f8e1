"""``sequence``: variable-length text of the shared vocabulary (captions, boxes, metadata, palettes, ...).

Sequences are the only kind decoded left to right: their decoder attends causally within the modality, the
encoder positions count visible tokens, their ids use the shared text tokenizer (``[PAD]`` = 0 is never
trained) and masking cuts them into spans replaced by sentinels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fourm_registry import ModalitySpec

from ..errors import GenerationError, ModDictError
from .base import KindAdapter, check_id_range, check_token_ids


class SequenceKind(KindAdapter):
    name = "sequence"
    discrete = True
    autoregressive = True
    positions_count_visible = True
    raw_from_file = False
    mask_layout = "span"
    generation_defaults = {"scheme": "autoregressive", "steps": 1, "temperature": 0.0, "token_schedule": "linear",
                           "guidance": 1.0}

    def num_slots(self, spec: ModalitySpec) -> int:
        return spec.max_length

    def placeholder(self, spec: ModalitySpec) -> Tensor:
        return torch.zeros(spec.max_length, dtype=torch.long)

    def padding_idx(self) -> int | None:
        return 0

    def check_model_tensor(self, spec: ModalitySpec, t: Tensor, vocab_size: int | None) -> int:
        n = check_token_ids(spec, t)
        if n < 2:
            raise ModDictError(f"mod_dict[{spec.name!r}]['tensor'] must hold at least 2 slots, got {n}")
        check_id_range(spec, t, vocab_size)
        return n

    def random_entry(self, spec: ModalitySpec, g: torch.Generator, batch: int, vocab_size: int | None) -> dict:
        from ..model.testing import sequence_entry

        return sequence_entry(g, batch, spec.max_length, vocab_size)

    def checkpoint_layout(self, spec: ModalitySpec, entry: dict[str, Any], name: str) -> dict[str, Any]:
        if entry.get("max_length") not in (None, spec.max_length):
            return {"max_length": entry["max_length"], "num_tokens": None}
        return {}

    def prepare_input(self, spec: ModalitySpec, t: Tensor, *, vocab_size: int | None,
                      sequence_mask: Any) -> tuple[Tensor, Tensor]:
        if t.ndim != 2 or t.is_floating_point():
            raise GenerationError(f"input {spec.name!r}: expected integer text ids of shape (B, L), "
                                    f"got {tuple(t.shape)} {t.dtype}")
        t = t.long()
        return t, sequence_mask(t)

    def empty_condition(self, t: Tensor, mask: Tensor, *, pad_id: int, first_sentinel_id: int) -> tuple[Tensor, Tensor]:
        """An empty sequence is one visible sentinel (the whole text masked)."""
        mask = torch.ones_like(mask)
        t = torch.full_like(t, pad_id)
        t[:, 0] = first_sentinel_id
        mask[:, 0] = False
        return t, mask

    def encode_raw(self, spec: ModalitySpec, values: list[Any], api: Any) -> Tensor:
        for v in values:
            if isinstance(v, (torch.Tensor, np.ndarray)) and np.ndim(v) > 1:
                raise GenerationError(f"input {spec.name!r}: a sequence takes text / JSON values, got an array of "
                                        f"shape {tuple(np.shape(v))}")
        return api.codec_encode(api.codec(spec.name), spec, values)
