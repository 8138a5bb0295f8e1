"""Raw sample values of a modality against its ``StorageSpec``: shape at a store's resolution, validation and
dtype coercion before a write, and the JSON text form of ``json`` modalities (written and read back).

Used by :class:`fourm_core.data.store.Store`; no zarr import here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_registry import ModalitySpec, StorageSpec

from .errors import CorruptDataError, IncompleteDataError, StoreError

#: Resolution at which image-like storage shapes are declared (and the default ``raw_size`` of a store).
DEFAULT_RAW_SIZE = 256


def storage_of(spec: ModalitySpec) -> StorageSpec:
    """``spec.storage``, or a :class:`StoreError` naming the plugin when the modality declares none."""
    if spec.storage is None:
        raise StoreError(
            f"modality {spec.name!r} (plugin {spec.plugin}) declares no StorageSpec, so it has no raw data to "
            f"store; set ModalitySpec.storage in the plugin"
        )
    return spec.storage


def storage_shape(spec: ModalitySpec, raw_size: int) -> tuple[int, ...]:
    """Per-sample shape of ``spec``'s raw array in a store of resolution ``raw_size``.

    Image-like storage shapes are declared at the default raw size: a shape ``(256, 256, C)`` is stored as
    ``(raw_size, raw_size, C)``. Every other shape is stored as declared.
    """
    storage = storage_of(spec)
    shape = tuple(storage.shape)
    if len(shape) == 3 and shape[:2] == (DEFAULT_RAW_SIZE, DEFAULT_RAW_SIZE):
        return (raw_size, raw_size, shape[2])
    return shape


def is_text_array(arr: Any) -> bool:
    """Whether a zarr array holds strings (the JSON documents of ``json`` modalities)."""
    code = np.dtype(arr.dtype).kind  # numpy kind code: O object, U unicode, T StringDType
    return code in "OUT"


def conform_raw(spec: ModalitySpec, shape: tuple[int, ...], raw: Any, index: int) -> Any:
    """Validate one raw sample against the storage spec; return what to store (array or JSON text)."""
    storage = storage_of(spec)
    if storage.is_json:
        try:
            return json.dumps(raw, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"modality {spec.name!r}: raw sample {index} is not JSON-serialisable ({exc}); the labeler must "
                f"return plain str/int/float/list/dict values"
            ) from exc
    arr = np.asarray(raw)
    if arr.shape != shape:
        raise StoreError(
            f"modality {spec.name!r}: raw sample {index} has shape {arr.shape}, the store expects {shape} "
            f"(StorageSpec shape {tuple(storage.shape)} at this store's raw_size)"
        )
    dtype = np.dtype(storage.dtype)
    if arr.dtype == dtype:
        return arr
    src, dst = arr.dtype.kind, dtype.kind  # numpy kind codes: i/u integers, b bool, f float
    same_kind = src == dst or (src in "iub" and dst in "iu")
    if not same_kind:
        raise StoreError(
            f"modality {spec.name!r}: raw sample {index} has dtype {arr.dtype}, which cannot be stored as "
            f"{dtype} without changing its kind; convert it in the labeler"
        )
    if dst in "iub" and arr.size:
        info = np.iinfo(dtype) if dst in "iu" else None
        if info is not None and (arr.min() < info.min or arr.max() > info.max):
            raise StoreError(
                f"modality {spec.name!r}: raw sample {index} has values in [{arr.min()}, {arr.max()}], outside "
                f"the range of {dtype}"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(dtype)
    if dst == "f" and not np.all(np.isfinite(out)):  # after the cast: values beyond e.g. float16's range become inf
        finite = np.isfinite(arr)
        what = ("NaN or inf" if not finite.all() else
                f"values beyond the range of {dtype} (largest magnitude {float(np.abs(arr).max()):g}, {dtype} holds up "
                f"to {float(np.finfo(dtype).max):g}); rescale them in the labeler")
        raise StoreError(f"modality {spec.name!r}: raw sample {index} contains {what}")
    return out


def encode_raws(spec: ModalitySpec, shape: tuple[int, ...], start: int, raws: Sequence[Any]) -> np.ndarray:
    """Samples ``start ..`` validated by :func:`conform_raw`, as the block to assign to the raw array:
    an object array of JSON texts for ``json`` modalities, else the stacked arrays."""
    values = [conform_raw(spec, shape, r, start + i) for i, r in enumerate(raws)]
    if storage_of(spec).is_json:
        data = np.empty(len(raws), dtype=object)
        data[:] = values
        return data
    return np.stack(values)


def decode_json(where: str, indices: Sequence[int], texts: Sequence[Any], *, check_complete: bool) -> list[Any]:
    """Parse the stored JSON ``texts`` of samples ``indices``; ``where`` (``"store URL: NAME/raw"``) names them
    in errors. A sample never written (empty text) raises :class:`IncompleteDataError` with ``check_complete``,
    else reads as ``None``."""
    out = []
    for i, text in zip(indices, texts):
        if text == "" or text is None:
            if check_complete:
                raise IncompleteDataError(f"{where} has no value for sample {i}")
            out.append(None)
            continue
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise CorruptDataError(f"{where} sample {i} is not valid JSON: {exc}") from exc
    return out
