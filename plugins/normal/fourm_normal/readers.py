"""Reader of real surface normals: a normal map file → the ``normal`` raw (uint8 (H, W, 3), ``(n + 1) * 127.5``).

Files: 8-bit RGB PNG already in that encoding (x, y, z in the red, green, blue channels), 16-bit RGB PNG
(``v / 257``), or ``.npy`` / ``.exr`` float (H, W, 3) unit vectors in [-1, 1], which are renormalised and
encoded. The axes are stored as the file gives them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin_kit.readers import LabelReadError, check_size, is_file_source, read_array, source_name


class NormalReader:
    """``read(path, image_size=(H, W))`` → uint8 (H, W, 3) encoded normals (see the module docstring)."""

    suffixes = (".png", ".tif", ".tiff", ".npy", ".exr")

    def __init__(self, *, spec: Any = None):
        self.spec = spec

    def read(self, source: Any, *, image_size: tuple[int, int]) -> np.ndarray:
        from .components import encode_normals

        if not is_file_source(source):
            raise LabelReadError(f"normal labels are files ({', '.join(self.suffixes)}), got the value {source!r:.80}")
        name = source_name(source)
        arr = check_size(read_array(source), image_size, name)
        if arr.shape[2] == 4:
            arr = arr[..., :3]
        if arr.shape[2] != 3:
            raise LabelReadError(f"normal file {name} has {arr.shape[2]} channels; a normal map has 3 (x, y, z)")
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if arr.dtype == np.uint16:
            return np.rint(arr.astype(np.float64) / 257.0).astype(np.uint8)
        if arr.dtype.kind == "f":
            n = arr.astype(np.float32)
            if not np.isfinite(n).all() or np.abs(n).max() > 1.0 + 1e-3:
                raise LabelReadError(f"normal file {name}: float normals must be finite and in [-1, 1] (got values up "
                                     f"to {float(np.nanmax(np.abs(n))):g})")
            return encode_normals(_unit(n))
        raise LabelReadError(f"normal file {name} holds {arr.dtype} values; use uint8/uint16 PNG or float .npy")


def _unit(n: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.maximum(norm, 1e-6)
