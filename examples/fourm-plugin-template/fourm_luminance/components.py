"""The luminance modality's components: labeler, transform, tokenizer factory, visualizer.

Each follows its protocol in ``fourm_registry.contracts`` (the contract tests check it): the labeler is called
with ``{"rgb": [...]}`` and has ``batch_size``; the transform has ``crop``, ``to_tensor`` and ``from_tensor``; the
tokenizer factory receives ``spec=`` and derives its vocabulary and grid from it; the visualizer returns an RGB
PIL image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin_kit.images import crop_resize, to_pil
from fourm_registry import ModalitySpec

_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class LuminanceLabeler:
    """Weight-free labeler: Y = 0.299 R + 0.587 G + 0.114 B, as uint8 (H, W, 1)."""

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 64):
        self.batch_size = batch_size

    def __call__(self, inputs: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
        out = []
        for img in inputs["rgb"]:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"luminance labeler: expected uint8 (H, W, 3) rgb, got {img.dtype} {img.shape}")
            y = np.rint(img.astype(np.float32) @ _WEIGHTS).clip(0, 255).astype(np.uint8)
            out.append(y[..., None])
        return out


class LuminanceTransform:
    """How raw luminance follows a crop/flip, and its tensor form for the tokenizer ([-1, 1], one channel)."""

    def crop(self, raw: np.ndarray, *, box, flip: bool, size) -> np.ndarray:
        return crop_resize(raw, box, size, flip=flip, interpolation="linear")

    def to_tensor(self, raws: list[np.ndarray]) -> Any:
        import torch

        x = torch.from_numpy(np.stack(raws)).permute(0, 3, 1, 2).float()  # (B, 1, H, W)
        return x / 127.5 - 1.0

    def from_tensor(self, x) -> list[np.ndarray]:
        a = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(dtype=__import__("torch").uint8)
        return [t.permute(1, 2, 0).cpu().numpy() for t in a]


def build_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """A ViT VQ-VAE over one channel, MSE reconstruction. It is called with the modality's spec (``spec=``) and
    takes the layout from it: 16 px patches, one token per cell of ``spec.grid`` (224 px for 14 x 14),
    ``spec.vocab_size`` codes. ``overrides`` come from the training config."""
    from fourm_core.plugin_kit.feature_tokenizers import stored_channels, vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    config = dict(**vit_layout(spec, patch_size=16), in_channels=stored_channels(spec), dim=128, depth=2,
                  num_heads=4, codebook_size=spec.vocab_size, code_dim=32, loss="mse")
    config.update(overrides)
    return ViTVQVAE(**config)


def visualize(raw: np.ndarray):
    """Grey image."""
    return to_pil(np.repeat(np.asarray(raw, dtype=np.uint8), 3, axis=-1))
