"""DINOv2 components: the labeler (transformers ``Dinov2Model``), transforms, visualizers, tokenizer factories.

Grid: the raw rgb image (square, e.g. 256 px) is resized as a whole to 224 px (no centre crop) and fed to
DINOv2-B/14, giving 16 × 16 patch features; cell ``(i, j)`` covers raw pixels ``[16i, 16i+16) × [16j, 16j+16)``
of a 256 px raw image. Crops rescale the box onto this grid (``fourm_core.plugin_kit.features``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin_kit.features import FeatureModalityComponents, preprocess_uint8
from fourm_core.plugin_kit.images import IMAGENET_MEAN, IMAGENET_STD
from fourm_core.plugin_kit.hub import resolve_device
from fourm_core.plugin_kit.labelers import ModelCache, load_model, map_batches, require_rgb

from .plugin import DEFAULT_WEIGHTS, FEATURE_DIM, GRID, PATCH_SIZE

log = logging.getLogger(__name__)
_CACHE: ModelCache[tuple[Any, tuple, tuple]] = ModelCache()


def _load_model(weights: str, device: str, modality: str) -> tuple[Any, tuple, tuple]:
    """(model, mean, std), cached per (weights, device) so ``dinov2`` and ``dinov2_global`` share one model."""
    return _CACHE.get((weights, device), lambda: _load_uncached(weights, device, modality))


def _load_uncached(weights: str, device: str, modality: str) -> tuple[Any, tuple, tuple]:
    from transformers import AutoImageProcessor, Dinov2Model

    model = load_model(Dinov2Model.from_pretrained, weights, modality=modality, device=device)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    try:
        proc = AutoImageProcessor.from_pretrained(weights)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
    except (OSError, ValueError):  # no preprocessor_config.json next to the weights: DINOv2 uses ImageNet stats
        log.info("no image processor config for %s; using ImageNet mean/std", weights)
    return model, mean, std


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
        return map_batches(self._label_batch, require_rgb(inputs, self.modality), self.batch_size)

    def _label_batch(self, chunk: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        x = preprocess_uint8(chunk, self.image_size, self.mean, self.std, device=self.device,
                             what=f"labeler for {self.modality!r}")
        with torch.inference_mode():
            hidden = self.model(pixel_values=x).last_hidden_state  # (B, 1 + R + h*w, D), layer-normed
        if self.output == "global":
            feats = hidden[:, 0]  # (B, D)
        else:
            feats = hidden[:, 1 + self.num_registers :].reshape(len(chunk), *self.grid, -1)  # (B, h, w, D)
        return feats.float().cpu().numpy().astype(np.float16)


#: the transform, visualizer and tokenizer factories of ``dinov2`` (768, 16, 16) and ``dinov2_global`` (768,):
#: cosine-loss ViT VQ-VAE with 16 × 16 tokens and an MLP VQ with 16 tokens, both of 8192 codes
_FEATURES = FeatureModalityComponents(modality="dinov2", global_modality="dinov2_global", channels=FEATURE_DIM,
                                      grid=GRID, patch_size=PATCH_SIZE)
make_feature_transform = _FEATURES.make_feature_transform
make_global_transform = _FEATURES.make_global_transform
visualize_features = _FEATURES.visualize_features
visualize_global = _FEATURES.visualize_global
make_feature_tokenizer = _FEATURES.make_feature_tokenizer
make_global_tokenizer = _FEATURES.make_global_tokenizer


__all__: Sequence[str] = (
    "Dinov2Labeler", "make_feature_transform", "make_global_transform", "visualize_features", "visualize_global",
    "make_feature_tokenizer", "make_global_tokenizer",
)
