"""Components of the ``depth`` modality.

Raw form: float16 ``(H, W, 1)`` relative depth in [0, 1], **0 = nearest, 1 = farthest**, normalised per image:
the model's prediction is resized to the rgb raw size by the image processor's
``post_process_depth_estimation`` (bicubic for DPT / Depth-Anything; it also removes ZoeDepth's padding), its
1st..99th percentile range is mapped linearly onto [0, 1] (values outside are clipped) and, for models predicting
relative *inverse* depth (disparity: Depth-Anything relative, DPT/MiDaS), the result is reversed (``1 - v``) so
that larger means farther for every model. The values are therefore an affine-normalised disparity (or depth, for metric models),
monotone in true depth but not metric.

Augmentation: crops resample bilinearly; a horizontal flip mirrors the map (depth values do not change).
Tensors: float32 ``(B, 1, H, W)`` in [0, 1].
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.plugin_kit.hub import resolve_device
from fourm_core.plugin_kit.images import colormap, crop_resize, stack_hwc, to_pil
from fourm_core.plugin_kit.labelers import (
    check_batch_size,
    compute_dtype,
    label_rgb_batches,
    load_processor_and_model,
)

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec

log = logging.getLogger(__name__)
MODALITY = "depth"
#: model types whose prediction is metric depth (larger = farther); others predict relative inverse depth
_METRIC_MODEL_TYPES = ("zoedepth", "glpn", "depth_pro")


def _check_depth(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, np.ndarray) or raw.ndim != 3 or raw.shape[2] != 1:
        desc = f"{raw.dtype} {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        raise ValueError(f"modality 'depth' ({where}): expected a float (H, W, 1) array, got {desc}")
    return raw


def normalize_depth(pred, *, prediction: str, percentiles: tuple[float, float] = (1.0, 99.0)):
    """Per-image normalisation of a batch of predictions ``(B, H, W)`` to [0, 1] with 0 = nearest.

    ``prediction`` is ``"disparity"`` (larger = nearer: reversed) or ``"depth"`` (larger = farther).
    A constant prediction gives all zeros.
    """
    import torch

    if prediction not in ("disparity", "depth"):
        raise ValueError(f"modality 'depth': prediction must be 'disparity' or 'depth', got {prediction!r}")
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"modality 'depth': percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    b = pred.shape[0]
    flat = pred.reshape(b, -1).float()  # (B, HW)
    q = torch.quantile(flat, torch.tensor([lo_p / 100.0, hi_p / 100.0], device=flat.device), dim=1)  # (2, B)
    lo, hi = q[0].view(b, 1, 1), q[1].view(b, 1, 1)
    span = hi - lo
    out = ((pred.float() - lo) / span.clamp_min(1e-12)).clamp_(0.0, 1.0)
    out = torch.where(span > 1e-12, out, torch.zeros_like(out))
    if prediction == "disparity":
        out = torch.where(span > 1e-12, 1.0 - out, out)
    return out


class DepthLabeler:
    """Relative depth with a transformers depth-estimation model (``AutoModelForDepthEstimation``).

    :param weights: hub id or local directory (default: the spec's ``default_weights``).
    :param device: ``cpu``, ``cuda``, ``cuda:1``, or ``auto``.
    :param batch_size: images per forward pass.
    :param prediction: ``auto`` (metric models → ``depth``; Depth-Anything relative, DPT → ``disparity``),
        ``disparity`` or ``depth``: what the model outputs, so that the stored map always grows with distance.
    :param percentiles: the per-image range mapped onto [0, 1].
    :param dtype: compute dtype (``float32``; ``float16``/``bfloat16`` on GPUs).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 8, *,
                 prediction: str = "auto", percentiles: tuple[float, float] = (1.0, 99.0),
                 dtype: str = "float32") -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        from .plugin import DEFAULT_WEIGHTS

        self.batch_size = check_batch_size(batch_size, MODALITY)
        self.dtype = compute_dtype(dtype, MODALITY)
        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.percentiles = tuple(float(p) for p in percentiles)
        self.processor, self.model = load_processor_and_model(
            AutoImageProcessor.from_pretrained, AutoModelForDepthEstimation.from_pretrained, self.weights,
            modality=MODALITY, device=self.device, dtype=self.dtype)
        self.prediction = self._prediction_kind(prediction)
        log.info("depth labeler: %s (%s output) on %s", self.weights, self.prediction, self.device)

    def _prediction_kind(self, prediction: str) -> str:
        if prediction in ("disparity", "depth"):
            return prediction
        if prediction != "auto":
            raise ValueError(f"labeler of modality 'depth': prediction must be 'auto', 'disparity' or 'depth', "
                             f"got {prediction!r}")
        config = self.model.config
        if getattr(config, "depth_estimation_type", None) == "metric" or config.model_type in _METRIC_MODEL_TYPES:
            return "depth"
        return "disparity"

    def __call__(self, inputs: dict[str, list]) -> list[np.ndarray]:
        """``inputs["rgb"]``: uint8 (H, W, 3) arrays → float16 (H, W, 1) relative depth maps."""
        return label_rgb_batches(self._label_batch, inputs, MODALITY, self.batch_size)

    def _label_batch(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        import inspect

        import torch

        enc = self.processor(images=rgbs, return_tensors="pt")
        pixel_values = enc["pixel_values"].to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            outputs = self.model(pixel_values=pixel_values)
        sizes = [img.shape[:2] for img in rgbs]
        post = getattr(self.processor, "post_process_depth_estimation", None)
        if post is not None:
            # the processor knows model-specific details (ZoeDepth's padding, Depth Pro's field of view)
            kwargs = {"target_sizes": sizes}
            if "source_sizes" in inspect.signature(post).parameters:
                kwargs["source_sizes"] = sizes
            outputs.predicted_depth = outputs.predicted_depth.float()
            maps = [r["predicted_depth"].float() for r in post(outputs, **kwargs)]  # B x (H, W)
        else:
            import torch.nn.functional as F

            pred = outputs.predicted_depth.float()
            pred = pred[:, 0] if pred.ndim == 4 else pred  # (B, h, w)
            maps = [F.interpolate(p[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]
                    for p, size in zip(pred, sizes)]
        if len(set(sizes)) == 1:  # one batched normalisation
            norm = normalize_depth(torch.stack(maps), prediction=self.prediction, percentiles=self.percentiles)
            return [a[..., None] for a in norm.to(torch.float16).cpu().numpy()]
        return [normalize_depth(m[None], prediction=self.prediction, percentiles=self.percentiles)[0]
                .to(torch.float16).cpu().numpy()[..., None] for m in maps]


class DepthTransform:
    """Crop (bilinear) / flip (mirror only) / tensor conversion of depth maps."""

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool = False,
             size: tuple[int, int] = (224, 224)) -> np.ndarray:
        return crop_resize(_check_depth(raw, "crop"), box, size, flip=flip, interpolation="linear")

    def to_tensor(self, raws: list[np.ndarray]):
        """float16 (H, W, 1) maps → float32 tensor (B, 1, H, W)."""
        import torch

        batch = stack_hwc([_check_depth(r, "to_tensor") for r in raws], "modality 'depth'")
        return torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2).contiguous()

    def from_tensor(self, x) -> list[np.ndarray]:
        """(B, 1, H, W) tensor → float16 (H, W, 1) maps clipped to [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"modality 'depth': from_tensor expects (B, 1, H, W), got {tuple(x.shape)}")
        arr = x.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float16)
        return list(arr)


def visualize(raw: np.ndarray):
    """Colour-mapped depth (``turbo_r``: near = red, far = blue) over the fixed [0, 1] range."""
    depth = _check_depth(np.asarray(raw), "visualize")
    return to_pil(colormap(depth[..., 0].astype(np.float32), cmap="turbo_r", vmin=0.0, vmax=1.0))


def make_tokenizer(*, spec: ModalitySpec, **overrides: Any):
    """Untrained depth tokenizer: ViT VQ-VAE on the spec's channel with 16 px patches, one token per cell of the
    spec's grid (224 px for 14 x 14), the spec's vocabulary, L1 loss. ``overrides`` replace any constructor
    argument."""
    from fourm_core.plugin_kit.feature_tokenizers import stored_channels, vit_layout
    from fourm_core.tokenizers import ViTVQVAE

    config: dict[str, Any] = dict(in_channels=stored_channels(spec), **vit_layout(spec, patch_size=16),
                                  vocab_size=spec.vocab_size, loss="l1")
    config.update(overrides)
    return ViTVQVAE(**config)
