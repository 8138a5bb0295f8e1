"""Quality measures of ``canny_edge`` predictions against labeled edge maps (numpy, OpenCV, Pillow; no torch).

Edge maps are the modality's raw form: uint8 ``(H, W, 1)``, any non-zero pixel an edge. Decoded edges are a
few pixels wide while Canny's are one pixel wide, so the overlap counts a pixel as matched when the other map
has an edge within ``tolerance`` pixels (a square neighbourhood: a dilation by a ``2 tolerance + 1`` square):

* precision: share of predicted edge pixels with a labeled edge within ``tolerance`` (0 without predicted edges);
* recall: share of labeled edge pixels with a predicted edge within ``tolerance`` (0 without labeled edges);
* F1: ``2 precision recall / (precision + recall)`` (0 when both are 0).

The trivial baseline "every pixel is an edge" has precision = edge density ``d`` (share of labeled edge
pixels) and recall 1, so F1 ``2 d / (d + 1)`` (:func:`all_edges_f1`).

:func:`make_metric` is the modality's ``metrics`` component (:class:`fourm_core.metrics.edges.EdgeMetric`:
these figures averaged over images, primary ``F1``); :func:`edge_f1` and :func:`all_edges_f1` score single
maps with the same definitions. Edge maps have no invalid pixels.
"""

from __future__ import annotations

from typing import Any

from fourm_core.metrics.edges import EdgeMetric, edge_prf
from fourm_core.metrics.edges import all_edges_f1 as _all_edges_f1

__all__ = ["edge_f1", "all_edges_f1", "edge_strength", "make_metric"]
MODALITY = "canny_edge"


def make_metric(*, spec: Any = None, **kwargs: Any) -> EdgeMetric:
    """The ``metrics`` factory: a fresh :class:`~fourm_core.metrics.edges.EdgeMetric` (``tolerance=`` pixels)."""
    return EdgeMetric(spec=spec, **kwargs)


def edge_f1(pred: Any, truth: Any, tolerance: int = 2) -> float:
    """F1 of the edge pixels of ``pred`` against those of ``truth`` with a ``tolerance``-pixel match (the
    module docstring defines it). ``pred`` is resized (bilinear) to ``truth``'s size first; a resampled pixel is
    an edge when it is non-zero."""
    return edge_prf(pred, truth, tolerance, MODALITY)[2]


def all_edges_f1(truth: Any) -> float:
    """F1 of the guess "every pixel is an edge" against ``truth``: ``2 d / (d + 1)`` for edge density ``d``."""
    return _all_edges_f1(truth, MODALITY)


def edge_strength(decoded: Any) -> Any:
    """The edge strength in a decoded edge tensor: ``(B, 1, H, W)`` as is (the default tokenizer's decoder
    predicts edge strength in [0, 1]); ``(B, 2, H, W)`` class probabilities {no edge, edge} (a tokenizer trained
    with ``loss="ce", num_classes=2``) → their edge channel, ``(B, 1, H, W)``. Works on tensors and arrays."""
    if decoded.ndim != 4 or decoded.shape[1] not in (1, 2):
        raise ValueError(f"modality 'canny_edge': a decoded edge tensor is (B, 1, H, W) edge strength or "
                         f"(B, 2, H, W) class probabilities, got {tuple(decoded.shape)}")
    return decoded[:, 1:2] if decoded.shape[1] == 2 else decoded
