"""Angular error statistics of surface normals (the protocol of Eigen & Fergus / Bansal et al. on NYUv2):
per valid pixel the angle between the predicted and the reference normal, in degrees, pooled over all pixels
of all samples: mean, median, RMSE and the share of pixels under 11.25°, 22.5° and 30°.

The median is read from a histogram of the angles in bins of ``1 / BINS_PER_DEGREE`` degrees (exact to
0.01° with the default), so memory does not grow with the dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Accumulator, as_map, resize_map

THRESHOLDS = (11.25, 22.5, 30.0)
BINS_PER_DEGREE = 100


def angles_deg(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Angles in degrees between the vectors of ``pred`` and ``ref`` (``(..., 3)``, any length), as
    ``atan2(|p x r|, p . r)`` (exact near 0° and 180°, where ``arccos`` of the cosine is not)."""
    dtype = np.result_type(np.asarray(pred).dtype, np.asarray(ref).dtype, np.float32)
    p, r = np.asarray(pred, dtype), np.asarray(ref, dtype)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(p, r), axis=-1), (p * r).sum(-1)))


class AngleStats:
    """Running pooled statistics of angular errors in degrees (sum, sum of squares, threshold counts and the
    histogram for the median)."""

    def __init__(self, thresholds: tuple[float, ...] = THRESHOLDS, bins_per_degree: int = BINS_PER_DEGREE):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.bins_per_degree = int(bins_per_degree)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.under = np.zeros(len(self.thresholds), np.int64)
        self.hist = np.zeros(180 * self.bins_per_degree + 1, np.int64)

    def add(self, angles: np.ndarray) -> None:
        a = np.asarray(angles, np.float64).reshape(-1)
        self.n += a.size
        self.total += float(a.sum())
        self.total_sq += float((a * a).sum())
        self.under += (a[:, None] < np.asarray(self.thresholds)[None]).sum(0)
        self.hist += np.bincount(np.rint(a * self.bins_per_degree).astype(np.int64), minlength=self.hist.size)

    def median(self) -> float:
        if self.n == 0:
            return float("nan")
        cum = np.cumsum(self.hist)
        lo = int(np.searchsorted(cum, (self.n + 1) // 2))  # the lower middle element (1-based rank)
        if self.n % 2:
            return lo / self.bins_per_degree
        hi = int(np.searchsorted(cum, self.n // 2 + 1))
        return 0.5 * (lo + hi) / self.bins_per_degree

    def figures(self) -> dict[str, float]:
        if self.n == 0:
            return {"mean_angle": float("nan"), "median_angle": float("nan"), "rmse_angle": float("nan"),
                    **{f"within_{t:g}": float("nan") for t in self.thresholds}}
        out = {"mean_angle": self.total / self.n, "median_angle": self.median(),
               "rmse_angle": float(np.sqrt(self.total_sq / self.n))}
        for t, u in zip(self.thresholds, self.under):
            out[f"within_{t:g}"] = float(u / self.n)
        return out


def decode_normals(a: np.ndarray) -> np.ndarray:
    """Stored normals → vectors: uint8 ``(n + 1) · 127.5`` decoded to float32 ``v / 127.5 - 1``; float maps are
    taken as vectors already (in their precision)."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return a if a.dtype.kind == "f" else a.astype(np.float32)


class NormalMetric(Accumulator):
    """Surface normals (raw: uint8 ``(H, W, 3)`` = ``(n + 1) · 127.5``) scored by angular error, pooled over
    pixels (the module docstring). Invalid reference pixels are those whose decoded vector is not near unit
    length (``|v|`` outside [0.5, 1.5]: the zero vector, stored as 127/128 grey, and all-black (0, 0, 0) or
    all-white pixels, which readers write where a label has no normal). A prediction of another size is
    resized (bilinear on the decoded vectors, then renormalised) to the reference's. Primary: ``mean_angle``
    in degrees (lower is better); per sample, the mean angle of its pixels."""

    primary = "mean_angle"
    higher_is_better = False

    def __init__(self, *, spec: Any = None, modality: str = "normal"):
        self.stats = AngleStats()
        super().__init__(spec.name if spec is not None else modality)

    def _reset(self) -> None:
        self.stats.reset()

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = []
        for i, (p, r) in enumerate(zip(preds, refs)):
            rv = decode_normals(as_map(self.modality, i, r, "reference", channels=3))
            pv = decode_normals(as_map(self.modality, i, p, "prediction", channels=3))
            pv = resize_map(pv, rv.shape[:2])
            length = np.linalg.norm(rv, axis=-1)
            valid = (length >= 0.5) & (length <= 1.5)
            a = angles_deg(pv[valid], rv[valid])
            self.stats.add(a)
            scores.append(float(a.mean()) if a.size else float("nan"))
        return scores

    def _compute(self) -> dict[str, float]:
        return self.stats.figures()
