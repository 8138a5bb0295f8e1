"""Components of the ``normal`` modality.

Raw form: uint8 ``(H, W, 3)``; channel c holds ``round((n_c + 1) * 127.5)`` of the unit normal ``n``
(x, y, z). Decoding: ``n = v / 127.5 - 1``, renormalised to unit length.

Where the normals come from:

* :class:`NormalLabeler` (the spec's labeler): a transformers surface-normal model through
  ``AutoModelForNormalEstimation`` (default TIPSv2-DPT; its image processor's
  ``post_process_normal_estimation`` when present, otherwise the raw output L2-normalised). Axes are the
  model's camera frame; x is always the image's horizontal axis.
* :func:`normals_from_depth` / :class:`NormalFromDepthLabeler`: a weight-free alternative for stores that
  have ``depth`` but no normal-model weights: back-project the relative depth map with a pinhole camera
  (assumed field of view), take the cross product of the surface tangents. Frame: x right, y up, z towards
  the camera (OpenGL). Use one source per store: the two frames may differ in the sign of y/z.

Augmentation: crops decode to unit vectors, resample bilinearly and renormalise; a horizontal flip mirrors
the map **and negates x** (in uint8: ``255 - v``). Tensors: float32 ``(B, 3, H, W)`` in [-1, 1].
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.plugin_kit.hub import resolve_device
from fourm_core.plugin_kit.images import crop_resize, stack_hwc, to_pil
from fourm_core.plugin_kit.labelers import (
    check_batch_size,
    compute_dtype,
    label_rgb_batches,
    load_processor_and_model,
)

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec

log = logging.getLogger(__name__)
MODALITY = "normal"


def _check_normal(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint8:
        desc = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise ValueError(f"modality 'normal' ({where}): expected a uint8 (H, W, 3) array, got {desc}")
    return raw


def encode_normals(n: np.ndarray) -> np.ndarray:
    """Unit normals (..., 3) float in [-1, 1] → uint8 ``round((n + 1) * 127.5)``."""
    return np.clip(np.rint((np.asarray(n, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def decode_normals(raw: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) → unit normals float32 (zero vectors stay zero)."""
    n = raw.astype(np.float32) / 127.5 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.maximum(norm, 1e-6)


def normals_from_depth(depth: np.ndarray, *, fov_deg: float = 60.0, depth_range: tuple[float, float] = (1.0, 4.0),
                       smooth_sigma: float = 1.0) -> np.ndarray:
    """Unit surface normals (H, W, 3) float32 of a relative depth map (H, W) or (H, W, 1), 0 = nearest.

    The map is mapped linearly onto the assumed camera distances ``depth_range``, back-projected with a
    pinhole camera of horizontal field of view ``fov_deg``; the normal is the normalised cross product of
    the vertical and horizontal tangents (central differences), oriented towards the camera.
    Frame: x right, y up, z towards the camera.
    """
    import cv2

    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"modality 'normal': depth must be (H, W) or (H, W, 1), got {np.shape(depth)}")
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"modality 'normal': fov_deg must be in (0, 180), got {fov_deg}")
    near, far = depth_range
    if not 0.0 < near < far:
        raise ValueError(f"modality 'normal': depth_range must satisfy 0 < near < far, got {depth_range}")
    if smooth_sigma > 0:
        d = cv2.GaussianBlur(d, (0, 0), smooth_sigma, borderType=cv2.BORDER_REPLICATE)
    h, w = d.shape
    z = near + d * (far - near)  # (H, W) distance along the optical axis
    f = (w / 2.0) / np.tan(np.deg2rad(fov_deg) / 2.0)
    u = (np.arange(w, dtype=np.float32) - (w - 1) / 2.0)[None, :]
    v = (np.arange(h, dtype=np.float32) - (h - 1) / 2.0)[:, None]
    points = np.stack([u * z / f, -v * z / f, -z], axis=-1)  # (H, W, 3), camera looks down -z
    du = np.gradient(points, axis=1)  # (H, W, 3) tangent along image x
    dv = np.gradient(points, axis=0)  # (H, W, 3) tangent along image y (downwards)
    n = np.cross(dv, du)  # towards the camera (+z) for a fronto-parallel plane
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    return n.astype(np.float32)


class NormalLabeler:
    """Surface normals with a transformers normal-estimation model (``AutoModelForNormalEstimation``).

    :param weights: hub id or local directory (default: the spec's ``default_weights``).
    :param device: ``cpu``, ``cuda``, ``cuda:1``, or ``auto``.
    :param batch_size: images per forward pass.
    :param dtype: compute dtype (``float32``; ``float16``/``bfloat16`` on GPUs).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 8, *,
                 dtype: str = "float32") -> None:
        from transformers import AutoImageProcessor, AutoModelForNormalEstimation

        from .plugin import DEFAULT_WEIGHTS

        self.batch_size = check_batch_size(batch_size, MODALITY)
        self.dtype = compute_dtype(dtype, MODALITY)
        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.processor, self.model = load_processor_and_model(
            AutoImageProcessor.from_pretrained, AutoModelForNormalEstimation.from_pretrained, self.weights,
            modality=MODALITY, device=self.device, dtype=self.dtype)
        log.info("normal labeler: %s on %s", self.weights, self.device)

    def __call__(self, inputs: dict[str, list]) -> list[np.ndarray]:
        """``inputs["rgb"]``: uint8 (H, W, 3) arrays → uint8 (H, W, 3) encoded unit normals."""
        return label_rgb_batches(self._label_batch, inputs, MODALITY, self.batch_size)

    def _label_batch(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        enc = self.processor(images=rgbs, return_tensors="pt")
        pixel_values = enc["pixel_values"].to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            normals = self.model(pixel_values=pixel_values).normals.float()  # (B, 3, h, w), unnormalised
        normals = F.normalize(normals, dim=1)
        sizes = {img.shape[:2] for img in rgbs}
        # bilinear upsampling of unit vectors shortens them between pixels: renormalise afterwards
        if len(sizes) == 1:
            up = F.interpolate(normals, size=next(iter(sizes)), mode="bilinear", align_corners=False)
            ups = list(F.normalize(up, dim=1).permute(0, 2, 3, 1).cpu().numpy())  # B x (H, W, 3)
        else:
            ups = [F.normalize(F.interpolate(n[None], size=img.shape[:2], mode="bilinear", align_corners=False),
                               dim=1)[0].permute(1, 2, 0).cpu().numpy() for n, img in zip(normals, rgbs)]
        return [encode_normals(u) for u in ups]


class NormalFromDepthLabeler:
    """Weight-free normals derived from the ``depth`` modality (see :func:`normals_from_depth`).

    Needs ``inputs["depth"]``; use it where ``depth`` is labelled and normal-model weights are unavailable.
    ``weights`` must be None (nothing to load); ``device`` is accepted for the labeler contract.
    """

    requires = ("rgb", "depth")

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 32, *,
                 fov_deg: float = 60.0, depth_range: tuple[float, float] = (1.0, 4.0),
                 smooth_sigma: float = 1.0) -> None:
        if weights is not None:
            raise ValueError(f"NormalFromDepthLabeler of modality 'normal' is weight-free; got weights={weights!r}")
        self.batch_size = int(batch_size)
        self.kwargs = dict(fov_deg=fov_deg, depth_range=tuple(depth_range), smooth_sigma=smooth_sigma)
        normals_from_depth(np.zeros((4, 4), np.float32), **self.kwargs)  # validate the parameters now

    def __call__(self, inputs: dict[str, list]) -> list[np.ndarray]:
        if "depth" not in inputs:
            raise ValueError("NormalFromDepthLabeler of modality 'normal' needs inputs['depth'] (label depth first)")
        return [encode_normals(normals_from_depth(d, **self.kwargs)) for d in inputs["depth"]]


class NormalTransform:
    """Crop (bilinear on unit vectors, renormalised) / flip (mirror + negate x) / tensor conversion."""

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] = (224, 224)) -> np.ndarray:
        n = decode_normals(_check_normal(raw, "crop"))
        out = crop_resize(n, box, size, flip=flip, interpolation="linear")
        out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-6)
        if flip:
            out[..., 0] = -out[..., 0]
        return encode_normals(out)

    def to_tensor(self, raws: list[np.ndarray]):
        """uint8 (H, W, 3) → float32 tensor (B, 3, H, W) in [-1, 1]."""
        import torch

        batch = stack_hwc([_check_normal(r, "to_tensor") for r in raws], "modality 'normal'")
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def from_tensor(self, x) -> list[np.ndarray]:
        """(B, 3, H, W) tensor → uint8 (H, W, 3) encoded unit normals (renormalised)."""
        import torch.nn.functional as F

        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"modality 'normal': from_tensor expects (B, 3, H, W), got {tuple(x.shape)}")
        n = F.normalize(x.detach().float(), dim=1).permute(0, 2, 3, 1).cpu().numpy()
        return [encode_normals(a) for a in n]


def visualize(raw: np.ndarray):
    """Normals as RGB: the stored encoding itself (x → red, y → green, z → blue)."""
    return to_pil(_check_normal(np.asarray(raw), "visualize"))


def make_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """Untrained normal tokenizer: ViT VQ-VAE on the spec's 3 channels with 16 px patches, one token per cell of
    the spec's grid (224 px for 14 x 14), the spec's vocabulary, MSE loss. ``overrides`` replace any
    constructor argument."""
    from fourm_core.plugin_kit.feature_tokenizers import stored_channels, vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(in_channels=stored_channels(spec), **vit_layout(spec, patch_size=16),
                                  vocab_size=spec.vocab_size, loss="mse")
    config.update(overrides)
    return ViTVQVAE(**config)
