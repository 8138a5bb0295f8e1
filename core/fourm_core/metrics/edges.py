"""Edge maps: precision, recall and F1 of edge pixels with a pixel tolerance.

Edge maps are uint8 ``(H, W, C)``, any non-zero pixel an edge. A pixel counts as matched when the other map
has an edge within ``tolerance`` pixels (a square neighbourhood: a dilation by a ``2 tolerance + 1`` square):

* precision: share of predicted edge pixels with a reference edge within ``tolerance`` (0 without predicted edges);
* recall: share of reference edge pixels with a predicted edge within ``tolerance`` (0 without reference edges);
* F1: ``2 precision recall / (precision + recall)`` (0 when both are 0).

A prediction of another size is resized bilinearly (Pillow) to the reference's; a resampled pixel is an edge
when it is non-zero. The trivial guess "every pixel is an edge" has precision = edge density ``d`` and recall
1, so F1 ``2 d / (d + 1)`` (:func:`all_edges_f1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import MeanOverSamples, MetricError


def _edge_map(modality: str, edges: Any, where: str) -> np.ndarray:
    a = np.asarray(edges)
    if a.ndim != 3:
        raise MetricError(f"modality {modality!r} metrics ({where}): expected an (H, W, C) edge map, got shape "
                          f"{a.shape}")
    return a


def _resized(edges: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (Pillow) of a (H, W, C) map to ``hw``, as uint8 (one channel is replicated to three)."""
    if edges.shape[:2] == tuple(hw):
        return edges
    from PIL import Image

    e = np.asarray(edges)
    if e.dtype != np.uint8:
        e = (e != 0).astype(np.uint8) * 255
    if e.shape[-1] == 1:
        e = np.repeat(e, 3, -1)
    return np.asarray(Image.fromarray(e[..., :3]).resize((hw[1], hw[0]), Image.BILINEAR))


def edge_prf(pred: Any, truth: Any, tolerance: int = 2, modality: str = "edges") -> tuple[float, float, float]:
    """(precision, recall, F1) of the edge pixels of ``pred`` against ``truth`` (the module docstring)."""
    import cv2

    if tolerance < 0:
        raise MetricError(f"modality {modality!r} metrics: tolerance must be >= 0 pixels, got {tolerance}")
    t = _edge_map(modality, truth, "truth")[..., 0] != 0
    p = _resized(_edge_map(modality, pred, "prediction"), t.shape)[..., 0] != 0
    k = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    precision = (p & (cv2.dilate(t.astype(np.uint8), k) > 0)).sum() / max(p.sum(), 1)
    recall = (t & (cv2.dilate(p.astype(np.uint8), k) > 0)).sum() / max(t.sum(), 1)
    return float(precision), float(recall), float(2 * precision * recall / max(precision + recall, 1e-9))


def all_edges_f1(truth: Any, modality: str = "edges") -> float:
    """F1 of the guess "every pixel is an edge" against ``truth``: ``2 d / (d + 1)`` for edge density ``d``."""
    density = (_edge_map(modality, truth, "truth")[..., 0] != 0).mean()
    return float(2 * density / (density + 1))


class EdgeMetric(MeanOverSamples):
    """Edge maps scored per image by precision / recall / F1 with a ``tolerance`` (pixels of the reference),
    averaged over images. Primary: ``F1`` (higher is better). Edge maps have no invalid pixels."""

    primary = "F1"
    higher_is_better = True

    def __init__(self, *, spec: Any = None, modality: str = "edges", tolerance: int = 2):
        if tolerance < 0:
            raise ValueError(f"modality {modality!r} metrics: tolerance must be >= 0 pixels, got {tolerance}")
        self.tolerance = int(tolerance)
        super().__init__(spec.name if spec is not None else modality)

    def _figures(self, index: int, pred: Any, ref: Any) -> Mapping[str, float]:
        p, r, f1 = edge_prf(pred, ref, self.tolerance, self.modality)
        return {"precision": p, "recall": r, "F1": f1, "edge_density": float((np.asarray(ref)[..., 0] != 0).mean())}
