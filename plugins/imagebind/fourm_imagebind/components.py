"""ImageBind components: labeler (OpenCLIP ViT-H/14 tower via :mod:`fourm_clip.openclip`), transforms,
visualizers and tokenizer factories.

Grid: the raw rgb image is resized as a whole to 224 px (no centre crop): 16 × 16 patches of 14 px; cell
``(i, j)`` covers raw pixels ``[16i, 16i+16) × [16j, 16j+16)`` of a 256 px raw image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_clip.openclip import get_extractor
from fourm_core.plugin_kit.features import FeatureMapTransform, VectorTransform, visualize_feature_map, visualize_vector

from .plugin import DEFAULT_WEIGHTS, FEATURE_DIM, GRID, PATCH_SIZE


class ImageBindLabeler:
    """ImageBind image features → float16 ``(16, 16, 1280)`` (``output="patch"``) or ``(1280,)`` (``"global"``).

    :param weights: ``MODEL:PRETRAINED`` (default ``ViT-H-14:laion2b_s32b_b79k``; a local weights file works:
        ``ViT-H-14:/path/open_clip_pytorch_model.bin``).
    :param device: ``cpu``, ``cuda`` or ``auto``.
    :param batch_size: images per forward pass.
    :param output: ``"patch"`` or ``"global"``.
    :param project: apply the tower's projection (1024-d joint space) instead of keeping the 1280-d width;
        the storage spec expects the un-projected 1280-d features (as the reference).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 8, *,
                 output: str = "patch", project: bool = False):
        if output not in ("patch", "global"):
            raise ValueError(f"ImageBindLabeler: output must be 'patch' or 'global', got {output!r}")
        self.output = output
        self.modality = "imagebind" if output == "patch" else "imagebind_global"
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
            pooled, tokens = self.extractor.run(images[start : start + self.batch_size])
            feats = pooled if self.output == "global" else tokens  # (B, width) | (B, h, w, width)
            if self.project:
                feats = self.extractor.project(feats)
            out.extend(feats.cpu().numpy().astype(np.float16))
        return out


def make_feature_transform(raw_size: int = 256) -> FeatureMapTransform:
    return FeatureMapTransform(grid=GRID, channels=FEATURE_DIM, patch_size=PATCH_SIZE, raw_size=raw_size,
                               modality="imagebind")


def make_global_transform() -> VectorTransform:
    return VectorTransform(channels=FEATURE_DIM, modality="imagebind_global")


def visualize_features(raw: np.ndarray):
    """PCA of the patch features to RGB (PIL image)."""
    return visualize_feature_map(raw)


def visualize_global(raw: np.ndarray):
    """The 1280-d global embedding as a colour-mapped 32 × 40 grid (PIL image)."""
    return visualize_vector(raw)


def make_feature_tokenizer(**overrides: Any):
    """Untrained cosine-loss ViT VQ-VAE over the (1280, 16, 16) feature map: 16 × 16 tokens, 8192 codes."""
    from fourm_core.plugin_kit.feature_tokenizers import feature_map_tokenizer

    return feature_map_tokenizer(channels=FEATURE_DIM, grid=GRID, vocab_size=8192, modality="imagebind", **overrides)


def make_global_tokenizer(**overrides: Any):
    """Untrained MLP VQ: 1280-d vector → 16 tokens of 8192 codes, cosine loss."""
    from fourm_core.plugin_kit.feature_tokenizers import vector_tokenizer

    return vector_tokenizer(dim=FEATURE_DIM, num_tokens=16, vocab_size=8192, modality="imagebind_global", **overrides)
