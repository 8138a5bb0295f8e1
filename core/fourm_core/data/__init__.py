"""Zarr datasets: the store format, ingest/label/tokenize/inspect jobs, the training loader.

Public API (imported lazily so that ``fourm_core.data.cli`` stays free of torch/zarr imports)::

    from fourm_core.data import Store, roundtrip_raw                    # store.py: the on-disk format
    from fourm_core.data import ingest, label, tokenize, inspect_store, repair_store  # jobs.py
    from fourm_core.data import WriterLock, StoreLockedError            # lock.py: one writing job per store
    from fourm_core.data import FourMDataset, FourMSampler, FourMCollate  # dataset.py: the loader

Modules: ``store`` (:class:`Store`) on ``shards`` (the zarr arrays, shards, completion records), ``raw``
(raw values against a plugin's ``StorageSpec``), ``records`` (per-shard records), ``lock`` (writer lock),
``identity`` (labeler / tokenizer hashes), ``atomic`` (atomic file writes), ``errors``; ``jobs`` re-exports
``ingest_job``,
``label_job``, ``tokenize_job`` and ``inspect_job`` (shared plumbing in ``jobkit``); ``crops``; ``dataset``.
The format is documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Store": "store", "roundtrip_raw": "store", "FORMAT_VERSION": "store", "CROP_FIELDS": "store",
    "storage_shape": "raw",
    "StoreError": "errors", "FormatVersionError": "errors", "CorruptDataError": "errors",
    "IncompleteDataError": "errors",
    "ingest": "ingest_job", "find_images": "ingest_job", "IngestReport": "ingest_job",
    "label": "label_job", "tokenize": "tokenize_job", "inspect_store": "inspect_job", "JobReport": "jobkit",
    "repair_store": "inspect_job", "WriterLock": "lock", "StoreLockedError": "lock",
    "crop_params": "crops", "load_image": "crops",
    "FourMDataset": "dataset", "FourMSampler": "dataset", "FourMCollate": "dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fourm_core.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
