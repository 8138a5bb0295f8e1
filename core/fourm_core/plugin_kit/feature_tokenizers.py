"""Tokenizer configurations shared by the feature modalities (DINOv2, CLIP, ImageBind and their globals).

Feature maps use a ViT VQ-VAE with patch size 1 over the stored grid (one token per feature cell, as the
reference's 16 × 16 DINOv2/ImageBind and 14 × 14 CLIP tokens) and a cosine loss; global vectors use an MLP VQ
with a cosine loss. Every keyword can be overridden (tests pass tiny sizes).
"""

from __future__ import annotations

from typing import Any


def feature_map_tokenizer(*, channels: int, grid: tuple[int, int], vocab_size: int, modality: str,
                          **overrides: Any):
    """An untrained :class:`~fourm_core.tokenizers.ViTVQVAE` for a ``(channels, *grid)`` feature map."""
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(
        modality=modality, in_channels=channels, image_size=list(grid), patch_size=1, dim=512, depth=6,
        num_heads=8, codebook_size=vocab_size, code_dim=32, loss="cosine",
    )
    config.update(overrides)
    return ViTVQVAE(**config)


def vector_tokenizer(*, dim: int, num_tokens: int, vocab_size: int, modality: str, **overrides: Any):
    """An untrained :class:`~fourm_core.tokenizers.MLPVQ`: a ``dim`` vector → ``num_tokens`` ids."""
    from fourm_core.tokenizers import MLPVQ

    config: dict[str, Any] = dict(
        modality=modality, in_dim=dim, num_tokens=num_tokens, hidden_dim=1024, depth=2, codebook_size=vocab_size,
        code_dim=32, loss="cosine",
    )
    config.update(overrides)
    return MLPVQ(**config)
