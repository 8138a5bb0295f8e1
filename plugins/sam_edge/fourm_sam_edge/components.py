"""sam_edge components: labeler (boundaries of the stored SAM instance masks), transform, visualizer and
tokenizer factory.

How raw data follows a crop: the edge map is cut to the crop box, flipped and resized bilinearly, then
re-binarised at a quarter of the full value, so that one-pixel edges survive a downscale (they may thicken by
a pixel when upscaled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.plugin_kit.images import crop_resize, stack_hwc, to_pil
from fourm_sam_instance.masks import boundaries, decode_instances

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec

MODALITY = "sam_edge"


def edges_from_instances(raw: dict[str, Any], *, thickness: int = 1) -> np.ndarray:
    """A stored ``sam_instance`` sample → uint8 (H, W, 1) edge map (255 on instance boundaries, else 0)."""
    edge = boundaries(decode_instances(raw), thickness=thickness)
    return (edge.astype(np.uint8) * 255)[..., None]


class SamEdgeLabeler:
    """Edges of the SAM instances of each image.

    Reads ``inputs["sam_instance"]`` (the stored instance masks, which ``requires`` guarantees in a store).
    Without it (e.g. called on bare photos) it runs the SAM runner of ``fourm_sam_instance`` itself, with
    ``weights`` / ``device`` / ``runner_kw``.
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 16, *,
                 thickness: int = 1, **runner_kw: Any):
        self.weights, self.device, self.batch_size = weights, device, int(batch_size)
        self.thickness = int(thickness)
        self.runner_kw = runner_kw
        self._runner = None

    def __call__(self, inputs: dict[str, list[Any]]) -> list[np.ndarray]:
        instances = inputs.get("sam_instance")
        if instances is None:
            if "rgb" not in inputs:
                raise ValueError(f"labeler for {MODALITY!r} needs inputs['sam_instance'] (or inputs['rgb'] to run SAM)")
            if self._runner is None:
                from fourm_sam_instance.runner import SamRunner

                self._runner = SamRunner(self.weights, self.device, **self.runner_kw, modality=MODALITY)
            instances = self._runner(inputs["rgb"])
        return [edges_from_instances(r, thickness=self.thickness) for r in instances]


class SamEdgeTransform:
    """Crop/flip/resize of the binary edge map and conversion to the tokenizer's (B, 1, H, W) float in [0, 1]."""

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] | None = None) -> np.ndarray:
        a = _check(raw)
        size = tuple(size) if size is not None else (int(box[2]), int(box[3]))
        soft = crop_resize(a.astype(np.float32), box, size, flip=flip, interpolation="linear")
        return ((soft >= 255 / 4) * 255).astype(np.uint8).reshape(*size, 1)

    def to_tensor(self, raws: Sequence[np.ndarray]) -> Any:
        import torch

        batch = stack_hwc([_check(r) for r in raws], f"modality {MODALITY!r}")
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0

    def from_tensor(self, tensor: Any) -> list[np.ndarray]:
        if tensor.ndim != 4 or tensor.shape[1] != 1:
            raise ValueError(f"modality {MODALITY!r}: expected a tensor (B, 1, H, W), got {tuple(tensor.shape)}")
        arr = (tensor.detach().float().cpu().numpy() >= 0.5).astype(np.uint8) * 255
        return list(arr.transpose(0, 2, 3, 1))


def _check(raw: np.ndarray) -> np.ndarray:
    a = np.asarray(raw)
    if a.ndim != 3 or a.shape[2] != 1 or a.dtype != np.uint8:
        raise ValueError(f"modality {MODALITY!r}: expected a uint8 edge map (H, W, 1), got {a.dtype} {a.shape}")
    return a


def visualize(raw: np.ndarray):
    """White edges on black (PIL RGB)."""
    return to_pil(_check(raw))


def make_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """Untrained ViT VQ-VAE for edge maps: 16 px patches, one token per cell of the spec's grid (224 px for
    14 x 14), the spec's vocabulary as codes, MSE loss."""
    from fourm_core.plugin_kit.feature_tokenizers import stored_channels, vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(**vit_layout(spec, patch_size=16), in_channels=stored_channels(spec), dim=256,
                                  depth=4, num_heads=4, codebook_size=spec.vocab_size, code_dim=32, loss="mse")
    config.update(overrides)
    return ViTVQVAE(**config)
