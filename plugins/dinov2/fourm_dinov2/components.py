"""DINOv2 components: the labeler (transformers ``Dinov2Model``), transforms, visualizers, tokenizer factories.

Grid: the raw rgb image (square, e.g. 256 px) is resized as a whole to 224 px (no centre crop) and fed to
DINOv2-B/14, giving 16 × 16 patch features; cell ``(i, j)`` covers raw pixels ``[16i, 16i+16) × [16j, 16j+16)``
of a 256 px raw image. Crops rescale the box onto this grid (``fourm_core.plugin_kit.features``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin_kit.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureMapTransform,
    VectorTransform,
    preprocess_uint8,
    visualize_feature_map,
    visualize_vector,
)
from fourm_core.plugin_kit.hub import load_pretrained, resolve_device

from .plugin import DEFAULT_WEIGHTS, FEATURE_DIM, GRID, PATCH_SIZE

log = logging.getLogger(__name__)
_CACHE: dict[tuple[str, str], tuple[Any, tuple, tuple]] = {}
_CACHE_LOCK = threading.Lock()


def _load_model(weights: str, device: str, modality: str) -> tuple[Any, tuple, tuple]:
    """(model, mean, std), cached per (weights, device) so ``dinov2`` and ``dinov2_global`` share one model."""
    key = (weights, device)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        from transformers import AutoImageProcessor, Dinov2Model

        model = load_pretrained(Dinov2Model.from_pretrained, weights, modality=modality)
        model = model.to(device).eval()
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        try:
            proc = AutoImageProcessor.from_pretrained(weights)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        except (OSError, ValueError):  # no preprocessor_config.json next to the weights: DINOv2 uses ImageNet stats
            log.info("no image processor config for %s; using ImageNet mean/std", weights)
        _CACHE[key] = (model, mean, std)
        return _CACHE[key]


class Dinov2Labeler:
    """DINOv2 features of rgb images.

    :param weights: hub id or local directory saved with ``save_pretrained`` (default ``facebook/dinov2-base``).
    :param device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
    :param batch_size: images per forward pass.
    :param output: ``"patch"`` → float16 ``(16, 16, D)`` patch features; ``"global"`` → float16 ``(D,)`` CLS.
    :param image_size: model input side (224: 16 × 16 patches of 14 px).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 16, *,
                 output: str = "patch", image_size: int = GRID[0] * PATCH_SIZE):
        if output not in ("patch", "global"):
            raise ValueError(f"Dinov2Labeler: output must be 'patch' or 'global', got {output!r}")
        self.output = output
        self.modality = "dinov2" if output == "patch" else "dinov2_global"
        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.model, self.mean, self.std = _load_model(self.weights, self.device, self.modality)
        patch = int(self.model.config.patch_size)
        if self.image_size % patch:
            raise ValueError(f"Dinov2Labeler: image_size {self.image_size} is not a multiple of the patch size {patch}")
        self.grid = (self.image_size // patch, self.image_size // patch)
        self.num_registers = int(getattr(self.model.config, "num_register_tokens", 0) or 0)

    def __call__(self, inputs: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
        import torch

        images = inputs.get("rgb")
        if images is None:
            raise ValueError(f"labeler for {self.modality!r} needs inputs['rgb'] (uint8 (H, W, 3) images)")
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            x = preprocess_uint8(chunk, self.image_size, self.mean, self.std, device=self.device,
                                 what=f"labeler for {self.modality!r}")
            with torch.inference_mode():
                hidden = self.model(pixel_values=x).last_hidden_state  # (B, 1 + R + h*w, D), layer-normed
            if self.output == "global":
                feats = hidden[:, 0]  # (B, D)
            else:
                feats = hidden[:, 1 + self.num_registers :].reshape(len(chunk), *self.grid, -1)  # (B, h, w, D)
            out.extend(feats.float().cpu().numpy().astype(np.float16))
        return out


def make_feature_transform(raw_size: int = 256) -> FeatureMapTransform:
    return FeatureMapTransform(grid=GRID, channels=FEATURE_DIM, patch_size=PATCH_SIZE, raw_size=raw_size,
                               modality="dinov2")


def make_global_transform() -> VectorTransform:
    return VectorTransform(channels=FEATURE_DIM, modality="dinov2_global")


def visualize_features(raw: np.ndarray):
    """PCA of the patch features to RGB (PIL image)."""
    return visualize_feature_map(raw)


def visualize_global(raw: np.ndarray):
    """The 768-d global embedding as a colour-mapped 24 × 32 grid (PIL image)."""
    return visualize_vector(raw)


def make_feature_tokenizer(**overrides: Any):
    """Untrained cosine-loss ViT VQ-VAE over the (768, 16, 16) feature map: patch 1 → 16 × 16 tokens, 8192 codes."""
    from fourm_core.plugin_kit.feature_tokenizers import feature_map_tokenizer

    return feature_map_tokenizer(channels=FEATURE_DIM, grid=GRID, vocab_size=8192, modality="dinov2", **overrides)


def make_global_tokenizer(**overrides: Any):
    """Untrained MLP VQ: 768-d vector → 16 tokens of 8192 codes, cosine loss."""
    from fourm_core.plugin_kit.feature_tokenizers import vector_tokenizer

    return vector_tokenizer(dim=FEATURE_DIM, num_tokens=16, vocab_size=8192, modality="dinov2_global", **overrides)


__all__: Sequence[str] = (
    "Dinov2Labeler", "make_feature_transform", "make_global_transform", "visualize_features", "visualize_global",
    "make_feature_tokenizer", "make_global_tokenizer",
)
