"""Reader of real depth labels: a depth map file → the ``depth`` raw (float16 (H, W, 1) in [0, 1], 0 = nearest).

Files: 16-bit (or 8-bit) PNG / TIFF, ``.npy`` (any numeric dtype) or ``.exr``, one channel (a 3-channel file
must hold equal channels). A file value ``v`` is ``v * scale`` metres (e.g. ``scale=0.001`` for PNGs in
millimetres); pixels equal to ``invalid`` (default 0, the usual "no measurement"), NaN or inf are invalid.
The valid values are normalised like the pseudo-labeler's output: by default the per-image 1st..99th
percentile range maps onto [0, 1] (clipped); with ``depth_range=(near, far)`` (metres) the fixed range does,
so that values are comparable across images. ``disparity=True`` reads files holding inverse depth (larger =
nearer) and reverses them. Invalid pixels take the value of their nearest valid pixel, so that the ingest
job's bilinear resize never blends an invalid marker into valid depth; a map without any valid pixel is an
error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin_kit.readers import (
    LabelReadError,
    check_size,
    fill_invalid_nearest,
    is_file_source,
    read_array,
    source_name,
)


class DepthReader:
    """``read(path, image_size=(H, W))`` → float16 (H, W, 1) relative depth (see the module docstring)."""

    suffixes = (".png", ".tif", ".tiff", ".npy", ".exr")

    def __init__(self, *, spec: Any = None, scale: float = 1.0, invalid: float | None = 0.0,
                 depth_range: tuple[float, float] | None = None, percentiles: tuple[float, float] = (1.0, 99.0),
                 disparity: bool = False):
        if not scale > 0:
            raise ValueError(f"depth reader: scale must be > 0, got {scale!r}")
        if depth_range is not None and not 0 <= depth_range[0] < depth_range[1]:
            raise ValueError(f"depth reader: depth_range must be (near, far) with 0 <= near < far, got {depth_range!r}")
        if not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
            raise ValueError(f"depth reader: percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
        self.spec, self.scale, self.invalid = spec, float(scale), invalid
        self.depth_range = None if depth_range is None else (float(depth_range[0]), float(depth_range[1]))
        self.percentiles, self.disparity = (float(percentiles[0]), float(percentiles[1])), bool(disparity)

    def read(self, source: Any, *, image_size: tuple[int, int]) -> np.ndarray:
        if not is_file_source(source):
            raise LabelReadError(f"depth labels are files ({', '.join(self.suffixes)}), got the value {source!r:.80}")
        name = source_name(source)
        arr = check_size(read_array(source), image_size, name)
        if arr.shape[2] != 1:
            if arr.shape[2] in (3, 4) and (arr[..., :3] == arr[..., :1]).all():
                arr = arr[..., :1]
            else:
                raise LabelReadError(f"depth file {name} has {arr.shape[2]} channels; a depth map has one (a grey "
                                     f"16-bit PNG, or an (H, W) array)")
        if arr.dtype.kind not in "uif":
            raise LabelReadError(f"depth file {name} holds {arr.dtype} values; depth must be numeric")
        raw = arr[..., 0]
        values = raw.astype(np.float64) * self.scale
        valid = np.isfinite(values)
        if self.invalid is not None:
            valid &= raw != self.invalid
        if not valid.any():
            raise LabelReadError(f"depth file {name} has no valid pixel (all are {self.invalid!r}, NaN or inf); "
                                 f"drop the sample or fix the invalid value (reader option invalid=)")
        return self._normalise(values, valid)[..., None].astype(np.float16)

    def _normalise(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.depth_range is not None:
            lo, hi = self.depth_range
            if self.disparity:
                lo, hi = (1.0 / hi, 1.0 / lo if lo > 0 else np.inf)
        else:
            lo, hi = np.percentile(values[valid], self.percentiles)
        span = hi - lo
        out = np.clip((values - lo) / span, 0.0, 1.0) if span > 0 else np.zeros_like(values)
        if self.disparity and span > 0:
            out = 1.0 - out
        return fill_invalid_nearest(np.where(valid, out, 0.0), valid)
