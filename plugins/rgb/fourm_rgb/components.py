"""Components of the ``rgb`` / ``tok_rgb`` modalities: crop transform, tensor conversion, visualizer, tokenizer.

Raw form: ``uint8 (H, W, 3)`` (the store holds 256 x 256). Tensors are ImageNet-normalised float32
``(B, 3, H, W)``, as the reference 4M feeds RGB to its patch embedding and to its RGB tokenizer.
A crop resamples bilinearly; a horizontal flip mirrors the pixels (nothing else to adjust).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.plugin_kit.images import IMAGENET_MEAN, IMAGENET_STD, crop_resize, pixels_to_tensor, stack_hwc, to_pil

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec


def _check_rgb(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint8:
        desc = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise ValueError(f"modality 'rgb' ({where}): expected a uint8 (H, W, 3) array, got {desc}; "
                         f"convert with np.asarray(pil_image.convert('RGB'))")
    return raw


class RGBTransform:
    """Crop / flip / tensor conversion of RGB raw data (shared by ``rgb`` and ``tok_rgb``)."""

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] = (224, 224)) -> np.ndarray:
        """Crop ``box`` = (top, left, height, width) in raw pixels, resize bilinearly to ``size``, flip."""
        return crop_resize(_check_rgb(raw, "crop"), box, size, flip=flip, interpolation="linear")

    def to_tensor(self, raws: list[np.ndarray]):
        """uint8 (H, W, 3) arrays → ImageNet-normalised float32 tensor (B, 3, H, W) (the reference's RGB
        normalisation, :data:`fourm_core.plugin_kit.images.IMAGENET_MEAN` / ``IMAGENET_STD``)."""
        return pixels_to_tensor(stack_hwc([_check_rgb(r, "to_tensor") for r in raws], "modality 'rgb'"))

    def from_tensor(self, x) -> list[np.ndarray]:
        """ImageNet-normalised (B, 3, H, W) tensor → list of uint8 (H, W, 3) arrays (clipped)."""
        import torch

        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"modality 'rgb': from_tensor expects (B, 3, H, W), got {tuple(x.shape)}")
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        img = (x.detach().float() * std + mean).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        return list(img.permute(0, 2, 3, 1).cpu().numpy())


def visualize(raw: np.ndarray):
    """The RGB image itself as a PIL image."""
    return to_pil(_check_rgb(np.asarray(raw), "visualize"))


def make_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """Untrained RGB tokenizer (``tok_rgb``): ViT VQ-VAE on 3 channels with 16 px patches, one token per cell of
    the spec's grid (224 px for 14 x 14), the spec's vocabulary, MSE loss on ImageNet-normalised pixels.
    ``overrides`` replace any constructor argument (tests use tiny sizes)."""
    from fourm_core.plugin_kit.feature_tokenizers import vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    # tok_rgb stores nothing (it tokenizes the rgb raw), so its channel count is rgb's: 3
    config: dict[str, Any] = dict(in_channels=3, **vit_layout(spec, patch_size=16), vocab_size=spec.vocab_size,
                                  loss="mse")
    config.update(overrides)
    return ViTVQVAE(**config)
