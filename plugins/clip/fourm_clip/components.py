"""CLIP components: labeler (open_clip vision tower), feature-map transform, visualizer, tokenizer factory.

Grid: the raw rgb image is resized as a whole to the model's input size (224 px for ViT-B-16, no centre
crop), giving 14 × 14 patch tokens; cell ``(i, j)`` covers raw pixels ``[s*i, s*(i+1)) × [s*j, s*(j+1))``
with ``s = raw_size / 14``. The stored features are the layer-normed patch tokens multiplied by the tower's
projection (512-d for ViT-B-16): the reference's ``CLIP-B16`` 512-channel feature map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin_kit.features import FeatureMapTransform, visualize_feature_map

from .openclip import get_extractor
from .plugin import DEFAULT_WEIGHTS, FEATURE_DIM, GRID, PATCH_SIZE


class ClipLabeler:
    """CLIP patch features of rgb images → float16 ``(h, w, D)``.

    :param weights: ``MODEL:PRETRAINED`` (default ``ViT-B-16:openai``), see :mod:`fourm_clip.openclip`.
    :param device: ``cpu``, ``cuda`` or ``auto``.
    :param batch_size: images per forward pass.
    :param project: multiply the patch tokens by the tower's projection (joint 512-d space) or keep the
        tower width (768-d for ViT-B-16). The storage spec expects the projected 512-d features.
    :param model_name, pretrained: alternative to ``weights``: ``weights = f"{model_name}:{pretrained}"``.
    """

    modality = "clip"

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 16, *,
                 project: bool = True, model_name: str | None = None, pretrained: str | None = None):
        if model_name or pretrained:
            if weights:
                raise ValueError("ClipLabeler: pass either weights='MODEL:PRETRAINED' or model_name/pretrained, not both")
            weights = f"{model_name or 'ViT-B-16'}:{pretrained or 'openai'}"
        self.weights = weights or DEFAULT_WEIGHTS
        self.batch_size = int(batch_size)
        self.project = bool(project)
        self.extractor = get_extractor(self.weights, device, modality=self.modality)

    def __call__(self, inputs: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
        images = inputs.get("rgb")
        if images is None:
            raise ValueError(f"labeler for {self.modality!r} needs inputs['rgb'] (uint8 (H, W, 3) images)")
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            _, tokens = self.extractor.run(images[start : start + self.batch_size])  # (B, h, w, width)
            if self.project:
                tokens = self.extractor.project(tokens)  # (B, h, w, embed_dim)
            out.extend(tokens.cpu().numpy().astype(np.float16))
        return out


def make_feature_transform(raw_size: int = 256) -> FeatureMapTransform:
    return FeatureMapTransform(grid=GRID, channels=FEATURE_DIM, patch_size=PATCH_SIZE, raw_size=raw_size, modality="clip")


def visualize_features(raw: np.ndarray):
    """PCA of the patch features to RGB (PIL image)."""
    return visualize_feature_map(raw)


def make_feature_tokenizer(**overrides: Any):
    """Untrained cosine-loss ViT VQ-VAE over the (512, 14, 14) feature map: patch 1 → 14 × 14 tokens, 8192 codes."""
    from fourm_core.plugin_kit.feature_tokenizers import feature_map_tokenizer

    return feature_map_tokenizer(channels=FEATURE_DIM, grid=GRID, vocab_size=8192, modality="clip", **overrides)
