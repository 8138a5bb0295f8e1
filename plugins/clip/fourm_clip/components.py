"""CLIP components: labeler (open_clip vision tower), feature-map transform, visualizer, tokenizer factory.

Grid: the raw rgb image is resized as a whole to the model's input size (224 px for ViT-B-16, no centre
crop), giving 14 × 14 patch tokens; cell ``(i, j)`` covers raw pixels ``[s*i, s*(i+1)) × [s*j, s*(j+1))``
with ``s = raw_size / 14``. The stored features are the layer-normed patch tokens multiplied by the tower's
projection (512-d for ViT-B-16): the reference's ``CLIP-B16`` 512-channel feature map.
"""

from __future__ import annotations

import numpy as np

from fourm_core.plugin_kit.features import FeatureModalityComponents
from fourm_core.plugin_kit.labelers import map_batches, require_rgb

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
        return map_batches(self._label_batch, require_rgb(inputs, self.modality), self.batch_size)

    def _label_batch(self, chunk: list[np.ndarray]) -> np.ndarray:
        _, tokens = self.extractor.run(chunk)  # (B, h, w, width)
        if self.project:
            tokens = self.extractor.project(tokens)  # (B, h, w, embed_dim)
        return tokens.cpu().numpy().astype(np.float16)


#: the transform, visualizer and tokenizer factories of ``clip`` (512, 14, 14): a cosine-loss ViT VQ-VAE with
#: 14 × 14 tokens of 8192 codes
_FEATURES = FeatureModalityComponents(modality="clip", channels=FEATURE_DIM, grid=GRID, patch_size=PATCH_SIZE)
make_feature_transform = _FEATURES.make_feature_transform
visualize_features = _FEATURES.visualize_features
make_feature_tokenizer = _FEATURES.make_feature_tokenizer
