"""Tokenizer configurations shared by the plugins' tokenizer factories: the ViT VQ-VAE layout of a spec's grid,
and the feature modalities' tokenizers (DINOv2, CLIP, ImageBind and their globals).

A tokenizer factory receives its modality's spec (``spec=``) and takes the vocabulary size, the grid and the
token count from it; :func:`vit_layout` turns a grid into the VQ-VAE's image and patch size.

Feature maps use a ViT VQ-VAE with patch size 1 over the stored grid (one token per feature cell, as the
reference's 16 × 16 DINOv2/ImageBind and 14 × 14 CLIP tokens) and a cosine loss; global vectors use an MLP VQ
with a cosine loss. Every keyword can be overridden (tests pass tiny sizes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec


def vit_layout(spec: ModalitySpec, *, patch_size: int) -> dict[str, Any]:
    """``modality``, ``image_size`` and ``patch_size`` of a ViT VQ-VAE giving one token per cell of ``spec.grid``:
    the image is the grid times ``patch_size`` pixels (an int when the grid is square)."""
    if spec.grid is None:
        raise ValueError(f"modality {spec.name!r}: a ViT VQ-VAE tokenizer needs a spec with a grid (kind "
                         f"{spec.kind!r} has none)")
    rows, cols = spec.grid
    size: int | list[int] = rows * patch_size if rows == cols else [rows * patch_size, cols * patch_size]
    return {"modality": spec.name, "image_size": size, "patch_size": patch_size}


def stored_channels(spec: ModalitySpec) -> int:
    """The channel count of ``spec``'s stored raw: the last axis of its storage shape."""
    if spec.storage is None or not spec.storage.shape:
        raise ValueError(f"modality {spec.name!r}: its tokenizer takes the channel count from the storage shape, "
                         f"but the spec declares {spec.storage!r}")
    return int(spec.storage.shape[-1])


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
