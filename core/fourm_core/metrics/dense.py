"""Dense regression figures for relative depth: least-squares scale-and-shift alignment, δ thresholds, AbsRel,
RMSE (what relative-depth protocols report, e.g. MiDaS and Depth Anything on NYUv2 / KITTI).

A relative depth map is known only up to an affine map, so before scoring the prediction ``p`` is aligned to
the reference ``r`` on the valid pixels by the least-squares scale and shift::

    (s, t) = argmin over (s, t) of  sum over valid pixels of (s p + t - r)^2

(closed form from the 2 x 2 normal equations; a constant prediction gets ``s = 0, t = mean(r)``). With
``a = s p + t`` clipped to ``[min_depth, max(r)]`` (as the protocols clip predictions to the evaluated depth
range), per image:

* ``AbsRel = mean |a - r| / r``
* ``RMSE = sqrt(mean (a - r)^2)``
* ``δk = share of pixels with max(a / r, r / a) < 1.25^k`` for k = 1, 2, 3

The figures are in the units of the stored maps (for the bundled ``depth`` modality a per-image normalised
map, affine in the model's disparity), not in metres: they compare predictions of one dataset with each
other, not with published metric-depth tables. Valid pixels are those with a finite reference above ``min_depth`` (a reader writes NaN where a label has no
depth; ``min_depth`` keeps the ratios finite). Figures are averaged over images (each image weighs the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import MeanOverSamples, as_map, resize_map

#: δ thresholds: 1.25, 1.25², 1.25³
DELTA_BASE = 1.25


def align_scale_shift(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``sum((s pred + t - ref)^2)`` over ``valid`` pixels (the module
    docstring); ``(0, mean(ref))`` when the prediction is constant there, ``(1, 0)`` without valid pixels."""
    p = pred[valid].astype(np.float64)
    r = ref[valid].astype(np.float64)
    n = p.size
    if n == 0:
        return 1.0, 0.0
    sp, sr = p.sum(), r.sum()
    spp, spr = (p * p).sum(), (p * r).sum()
    det = n * spp - sp * sp
    if det <= 1e-12 * max(n * spp, 1e-300):
        return 0.0, float(sr / n)
    s = (n * spr - sp * sr) / det
    return float(s), float((sr - s * sp) / n)


def depth_figures(aligned: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """AbsRel, RMSE and δ1..δ3 of already aligned, positive predictions against references (1-D arrays of
    the valid pixels); NaN figures without pixels."""
    if aligned.size == 0:
        return {"abs_rel": float("nan"), "rmse": float("nan"),
                **{f"delta{k}": float("nan") for k in (1, 2, 3)}}
    a, r = aligned.astype(np.float64), ref.astype(np.float64)
    ratio = np.maximum(a / r, r / a)
    out = {"abs_rel": float(np.mean(np.abs(a - r) / r)), "rmse": float(np.sqrt(np.mean((a - r) ** 2)))}
    for k in (1, 2, 3):
        out[f"delta{k}"] = float(np.mean(ratio < DELTA_BASE ** k))
    return out


class DepthMetric(MeanOverSamples):
    """Relative depth (raw: float ``(H, W, 1)``, larger = farther) scored after scale-and-shift alignment (the
    module docstring defines the figures). A prediction of another size is resized (bilinear) to the
    reference's. Primary: ``delta1`` (higher is better).

    :param min_depth: references at or below it are left out (and aligned predictions clipped up to it).
    :param align: ``"scale_shift"`` (default) or ``"none"`` (metric depth: compare the values as they are).
    """

    primary = "delta1"
    higher_is_better = True

    def __init__(self, *, spec: Any = None, modality: str = "depth", min_depth: float = 1e-3,
                 align: str = "scale_shift"):
        if align not in ("scale_shift", "none"):
            raise ValueError(f"modality {modality!r} metrics: align must be 'scale_shift' or 'none', got {align!r}")
        if not min_depth >= 0:
            raise ValueError(f"modality {modality!r} metrics: min_depth must be >= 0, got {min_depth!r}")
        self.min_depth = float(min_depth)
        self.align = align
        super().__init__(spec.name if spec is not None else modality)

    def _figures(self, index: int, pred: Any, ref: Any) -> Mapping[str, float]:
        r = as_map(self.modality, index, ref, "reference", channels=1)[..., 0].astype(np.float64)
        p = as_map(self.modality, index, pred, "prediction", channels=1)
        if not np.isfinite(p).all():
            raise self.error(index, "the prediction has NaN or infinite values; only references may mark "
                                    "invalid pixels (with NaN)")
        p = resize_map(p.astype(np.float32), r.shape)[..., 0].astype(np.float64)
        valid = np.isfinite(r) & (r > self.min_depth)
        s, t = align_scale_shift(p, r, valid) if self.align == "scale_shift" else (1.0, 0.0)
        rv = r[valid]
        hi = rv.max() if rv.size else self.min_depth
        aligned = np.clip(s * p[valid] + t, max(self.min_depth, 1e-12), max(hi, self.min_depth, 1e-12))
        figures = depth_figures(aligned, rv)
        figures["valid_fraction"] = float(valid.mean())
        return figures
