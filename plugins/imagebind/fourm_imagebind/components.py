"""ImageBind components: labeler (OpenCLIP ViT-H/14 tower via :mod:`fourm_clip.openclip`), transforms,
visualizers and tokenizer factories.

Grid: the raw rgb image is resized as a whole to 224 px (no centre crop): 16 × 16 patches of 14 px; cell
``(i, j)`` covers raw pixels ``[16i, 16i+16) × [16j, 16j+16)`` of a 256 px raw image.
"""

from __future__ import annotations

import numpy as np

from fourm_clip.openclip import get_extractor
from fourm_core.plugin_kit.features import FeatureModalityComponents
from fourm_core.plugin_kit.labelers import map_batches, require_rgb

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
        return map_batches(self._label_batch, require_rgb(inputs, self.modality), self.batch_size)

    def _label_batch(self, chunk: list[np.ndarray]) -> np.ndarray:
        pooled, tokens = self.extractor.run(chunk)
        feats = pooled if self.output == "global" else tokens  # (B, width) | (B, h, w, width)
        if self.project:
            feats = self.extractor.project(feats)
        return feats.cpu().numpy().astype(np.float16)


#: the transform, visualizer and tokenizer factories of ``imagebind`` (1280, 16, 16) and ``imagebind_global``
#: (1280,): cosine-loss ViT VQ-VAE with 16 × 16 tokens and an MLP VQ with 16 tokens, both of 8192 codes
_FEATURES = FeatureModalityComponents(modality="imagebind", global_modality="imagebind_global",
                                      channels=FEATURE_DIM, grid=GRID, patch_size=PATCH_SIZE)
make_feature_transform = _FEATURES.make_feature_transform
make_global_transform = _FEATURES.make_global_transform
visualize_features = _FEATURES.visualize_features
visualize_global = _FEATURES.visualize_global
make_feature_tokenizer = _FEATURES.make_feature_tokenizer
make_global_tokenizer = _FEATURES.make_global_tokenizer
