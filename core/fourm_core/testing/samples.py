"""Samples and comparisons of the plugin contract kit: real photos, the storage check, raw equality.

numpy and scikit-image are imported inside the functions.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fourm_registry import ModalitySpec

#: side of the square raw images the kit feeds to labelers (the store's default raw_size)
RAW_SIZE = 256


def sample_photos(n: int = 3, size: int = RAW_SIZE) -> list[Any]:
    """``n`` real photos shipped by scikit-image, as uint8 (size, size, 3) arrays (short side resized, centre crop)."""
    from skimage import data

    from fourm_core.plugin_kit.images import resize_short_side_center_crop

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle"]
    photos = []
    for i in range(n):
        name = names[i % len(names)]
        img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        photos.append(resize_short_side_center_crop(img, size))
    return photos


def check_raw(spec: ModalitySpec, raw: Any) -> None:
    """Raise ``ValueError`` naming the modality when ``raw`` does not match ``spec.storage``."""
    import numpy as np

    storage = spec.storage
    if storage is None:
        raise ValueError(f"modality {spec.name!r} declares no storage spec")
    if storage.is_json:
        try:
            json.dumps(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"modality {spec.name!r}: raw sample is not JSON-serialisable: {exc}") from exc
        return
    if not isinstance(raw, np.ndarray):
        raise ValueError(f"modality {spec.name!r}: raw sample must be a numpy array, got {type(raw).__name__}")
    if raw.dtype != np.dtype(storage.dtype):
        raise ValueError(f"modality {spec.name!r}: raw dtype {raw.dtype} != storage dtype {storage.dtype}")
    if tuple(raw.shape) != tuple(storage.shape):
        raise ValueError(f"modality {spec.name!r}: raw shape {raw.shape} != storage shape {storage.shape}")
    if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
        raise ValueError(f"modality {spec.name!r}: raw sample contains NaN or inf")


def raw_equal(a: Any, b: Any) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def json_close(a: Any, b: Any, atol: float = 0.0) -> bool:
    """``a`` and ``b`` are the same JSON structure (dict keys, list lengths, strings, bools) with every number
    within ``atol`` (``atol=0``: equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= atol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_close(a[k], b[k], atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_close(x, y, atol) for x, y in zip(a, b))
    return a == b
