"""Zarr datasets: the store format, ingest/label/tokenize/inspect jobs, the training loader.

Public API (imported lazily so that ``fourm_core.data.cli`` stays free of torch/zarr imports)::

    from fourm_core.data import Store, roundtrip_raw                    # store.py: the on-disk format
    from fourm_core.data import ingest, label, tokenize, inspect_store  # jobs.py
    from fourm_core.data import FourMDataset, FourMSampler, FourMCollate  # dataset.py: the loader

The format is documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Store": "store", "roundtrip_raw": "store", "storage_shape": "store", "FORMAT_VERSION": "store",
    "StoreError": "store", "FormatVersionError": "store", "CorruptDataError": "store",
    "IncompleteDataError": "store", "CROP_FIELDS": "store",
    "ingest": "jobs", "label": "jobs", "tokenize": "jobs", "inspect_store": "jobs", "find_images": "jobs",
    "IngestReport": "jobs", "JobReport": "jobs",
    "crop_params": "crops", "load_image": "crops",
    "FourMDataset": "dataset", "FourMSampler": "dataset", "FourMCollate": "dataset",
    "IMAGENET_MEAN": "dataset", "IMAGENET_STD": "dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fourm_core.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
