"""Boxes and points under crops and flips (normalised [0, 1] coordinates of the raw image)."""

from __future__ import annotations

import numpy as np


def crop_boxes(boxes: np.ndarray, box: tuple[int, int, int, int], raw_size: tuple[int, int], *, flip: bool = False,
               min_size: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Transform ``boxes`` (N, 4) xyxy in [0, 1] of the raw image into the crop ``box`` = (top, left, h, w) in
    raw pixels. Returns (new boxes clipped to [0, 1], keep mask of boxes that still have an area)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    H, W = raw_size
    top, left, h, w = box
    x0 = (b[:, 0] * W - left) / w
    y0 = (b[:, 1] * H - top) / h
    x1 = (b[:, 2] * W - left) / w
    y1 = (b[:, 3] * H - top) / h
    out = np.clip(np.stack([x0, y0, x1, y1], axis=1), 0.0, 1.0)
    if flip:
        out = np.stack([1 - out[:, 2], out[:, 1], 1 - out[:, 0], out[:, 3]], axis=1)
    keep = ((out[:, 2] - out[:, 0]) > min_size) & ((out[:, 3] - out[:, 1]) > min_size)
    return out, keep


def crop_points(points: np.ndarray, box: tuple[int, int, int, int], raw_size: tuple[int, int], *,
                flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Transform points (N, 2) xy in [0, 1] of the raw image into the crop; returns (points, inside mask)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    H, W = raw_size
    top, left, h, w = box
    x = (p[:, 0] * W - left) / w
    y = (p[:, 1] * H - top) / h
    if flip:
        x = 1 - x
    inside = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    return np.stack([x, y], axis=1), inside


def quantize(values: np.ndarray, bins: int = 1000) -> np.ndarray:
    """[0, 1] floats → integer bins 0..bins-1 (the coordinate tokens ``v0=..``)."""
    return np.clip(np.floor(np.asarray(values, dtype=np.float64) * bins), 0, bins - 1).astype(np.int64)


def dequantize(bins_: np.ndarray, bins: int = 1000) -> np.ndarray:
    """Integer bins → bin centres in [0, 1]."""
    return (np.asarray(bins_, dtype=np.float64) + 0.5) / bins
