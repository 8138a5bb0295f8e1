"""Errors of the dataset store and the jobs that read and write it (a leaf module: no zarr, no numpy).

All subclass the registry's ``FourmError``, so the ``fourm`` CLI prints them as one clean line.
"""

from __future__ import annotations

from fourm_registry import FourmError


class StoreError(FourmError):
    """A dataset store is missing, malformed, or used in a way its format does not allow."""


class FormatVersionError(StoreError):
    """The store was written by a newer (or unknown) version of the format."""


class CorruptDataError(StoreError):
    """Stored data failed its checksum or could not be decoded."""


class IncompleteDataError(StoreError):
    """Samples were requested from a shard that no job has finished writing."""


__all__ = ["CorruptDataError", "FormatVersionError", "IncompleteDataError", "StoreError"]
