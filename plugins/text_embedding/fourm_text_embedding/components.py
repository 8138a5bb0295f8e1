"""Components of the ``text_embedding`` modality (4M-21's ``t5_caption``).

Raw form: float16 ``(77, 4096)``: the T5 encoder's last hidden states of the caption (T5 tokenisation,
truncated to 77 tokens including ``</s>``), rows past the caption's length zero. The number of valid rows is
the number of rows that are not all zero. No tokenizer: the 4M model projects the vectors linearly.
The embedding describes the caption, so crops and flips leave it unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
MODALITY = "text_embedding"
DEFAULT_WEIGHTS = "google/t5-v1_1-xxl"
MAX_LENGTH = 77
EMBED_DIM = 4096


def check_embedding(raw: Any, max_length: int = MAX_LENGTH, embed_dim: int = EMBED_DIM) -> np.ndarray:
    a = np.asarray(raw)
    if a.ndim != 2 or a.shape[1] != embed_dim or a.shape[0] > max_length:
        raise ValueError(f"modality {MODALITY!r}: an embedding must be (L <= {max_length}, {embed_dim}), got {a.shape}")
    return a


def valid_length(raw: Any) -> int:
    """Number of leading rows before the zero padding (rows that are not all zero)."""
    a = np.asarray(raw)
    nz = np.flatnonzero(np.abs(a).max(axis=1) > 0)
    return int(nz[-1]) + 1 if len(nz) else 0


class TextEmbeddingLabeler:
    """A transformers T5 encoder (``T5EncoderModel`` + its tokenizer) over the ``caption`` input.

    ``dtype``: ``"auto"`` computes in float32 on CPU and bfloat16 on CUDA (T5 overflows in float16); the
    stored result is float16. The encoder's hidden size must equal the spec's ``embed_dim`` (4096, the
    XXL size 4M-21 used: ``google/t5-v1_1-xxl`` or ``google/flan-t5-xxl``).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 16, *,
                 max_length: int = MAX_LENGTH, embed_dim: int = EMBED_DIM, dtype: str = "auto"):
        import torch
        from transformers import AutoTokenizer, T5EncoderModel

        from fourm_core.plugin_kit.hub import load_pretrained, resolve_device

        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.batch_size, self.max_length, self.embed_dim = batch_size, max_length, embed_dim
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.dtype = getattr(torch, dtype)
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, self.weights, modality=MODALITY)
        self.model = load_pretrained(T5EncoderModel.from_pretrained, self.weights, modality=MODALITY, dtype=self.dtype)
        self.model.to(self.device).eval()
        if self.model.config.d_model != embed_dim:
            raise ValueError(
                f"modality {MODALITY!r}: weights {self.weights!r} have hidden size {self.model.config.d_model}, but the "
                f"modality stores {embed_dim}-dim embeddings; use a T5-XXL encoder (e.g. google/t5-v1_1-xxl, "
                f"google/flan-t5-xxl) or a model whose d_model is {embed_dim}")

    def embed(self, captions: list[str]) -> list[np.ndarray]:
        import torch

        from fourm_core.plugin_kit.labelers import batches

        for c in captions:
            if not isinstance(c, str):
                raise ValueError(f"modality {MODALITY!r}: the 'caption' input must be str, got {type(c).__name__}")
        out: list[np.ndarray] = []
        for batch in batches(captions, self.batch_size):
            enc = self.tokenizer(batch, max_length=self.max_length, padding="max_length", truncation=True,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                h = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            h = (h.float() * enc["attention_mask"][..., None].float()).clamp(-65504, 65504)  # (B, L, D)
            out += list(h.to(torch.float16).cpu().numpy())
        return out

    def __call__(self, inputs: dict[str, list[Any]]) -> list[np.ndarray]:
        if "caption" not in inputs:
            raise ValueError(f"modality {MODALITY!r} requires the 'caption' modality: label captions first "
                             f"(`fourm label STORE --modalities caption`)")
        caps = inputs["caption"]
        if len(caps) != len(inputs.get("rgb", caps)):
            raise ValueError(f"modality {MODALITY!r}: {len(caps)} captions for {len(inputs['rgb'])} images")
        return self.embed(list(caps))


class TextEmbeddingTransform:
    """Identity under crops/flips; ``to_tensor`` stacks ``(B, L, D)`` float32 for the model's projection."""

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             **_: Any) -> np.ndarray:
        return np.asarray(raw)

    def to_tensor(self, raws: list[Any]):
        import torch

        return torch.from_numpy(np.stack([check_embedding(r) for r in raws]).astype(np.float32))

    def from_tensor(self, tensor) -> list[np.ndarray]:
        import torch

        return [t.to(dtype=torch.float16).cpu().numpy() for t in tensor]


def visualize(raw: Any, *, columns: int = 256, row_height: int = 4):
    """Heat map: one row per valid token, the D dims averaged into ``columns`` bins, diverging colours."""
    from fourm_core.plugin_kit.images import colormap, to_pil

    a = np.asarray(raw, dtype=np.float32)
    a = a[: max(valid_length(a), 1)]
    cols = min(columns, a.shape[1])
    pooled = a[:, : a.shape[1] // cols * cols].reshape(a.shape[0], cols, -1).mean(-1)  # (L, cols)
    lim = float(np.abs(pooled).max()) or 1.0
    img = colormap(pooled, cmap="coolwarm", vmin=-lim, vmax=lim)
    return to_pil(np.repeat(img, row_height, axis=0))
