"""Quality measures of ``canny_edge`` predictions against labeled edge maps (numpy, OpenCV, Pillow; no torch).

Edge maps are the modality's raw form: uint8 ``(H, W, 1)``, any non-zero pixel an edge. Decoded edges are a
few pixels wide while Canny's are one pixel wide, so the overlap counts a pixel as matched when the other map
has an edge within ``tolerance`` pixels (a square neighbourhood: a dilation by a ``2 tolerance + 1`` square):

* precision: share of predicted edge pixels with a labeled edge within ``tolerance`` (0 without predicted edges);
* recall: share of labeled edge pixels with a predicted edge within ``tolerance`` (0 without labeled edges);
* F1: ``2 precision recall / (precision + recall)`` (0 when both are 0).

The trivial baseline "every pixel is an edge" has precision = edge density ``d`` (share of labeled edge
pixels) and recall 1, so F1 ``2 d / (d + 1)`` (:func:`all_edges_f1`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["edge_f1", "all_edges_f1", "edge_strength"]


def _edge_mask(edges: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(edges)
    if a.ndim != 3:
        raise ValueError(f"modality 'canny_edge' metrics ({where}): expected an (H, W, C) edge map, got shape "
                         f"{a.shape}")
    return a


def _resized(edges: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 (H, W, C) map to ``hw`` (one channel is replicated to three for Pillow)."""
    from PIL import Image

    if edges.shape[-1] == 1:
        edges = np.repeat(edges, 3, -1)
    return np.asarray(Image.fromarray(edges).resize((hw[1], hw[0]), Image.BILINEAR))


def edge_f1(pred: np.ndarray, truth: np.ndarray, tolerance: int = 2) -> float:
    """F1 of the edge pixels of ``pred`` against those of ``truth`` with a ``tolerance``-pixel match (the
    module docstring defines it). ``pred`` is resized (bilinear) to ``truth``'s size first; a resampled pixel is
    an edge when it is non-zero."""
    import cv2

    if tolerance < 0:
        raise ValueError(f"modality 'canny_edge' metrics: tolerance must be >= 0 pixels, got {tolerance}")
    t = _edge_mask(truth, "truth")[..., 0] > 0
    p = _resized(_edge_mask(pred, "prediction"), t.shape)[..., 0] > 0
    k = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    precision = (p & (cv2.dilate(t.astype(np.uint8), k) > 0)).sum() / max(p.sum(), 1)
    recall = (t & (cv2.dilate(p.astype(np.uint8), k) > 0)).sum() / max(t.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def all_edges_f1(truth: np.ndarray) -> float:
    """F1 of the guess "every pixel is an edge" against ``truth``: ``2 d / (d + 1)`` for edge density ``d``."""
    density = (_edge_mask(truth, "truth")[..., 0] > 0).mean()
    return float(2 * density / (density + 1))


def edge_strength(decoded: Any) -> Any:
    """The edge strength in a decoded edge tensor: ``(B, 1, H, W)`` as is (the default tokenizer's decoder
    predicts edge strength in [0, 1]); ``(B, 2, H, W)`` class probabilities {no edge, edge} (a tokenizer trained
    with ``loss="ce", num_classes=2``) → their edge channel, ``(B, 1, H, W)``. Works on tensors and arrays."""
    if decoded.ndim != 4 or decoded.shape[1] not in (1, 2):
        raise ValueError(f"modality 'canny_edge': a decoded edge tensor is (B, 1, H, W) edge strength or "
                         f"(B, 2, H, W) class probabilities, got {tuple(decoded.shape)}")
    return decoded[:, 1:2] if decoded.shape[1] == 2 else decoded
