"""Per-shard records of what a job wrote: detect a shard object that is missing, cut short or replaced.

Beside every data array ``<path>`` (``<mod>/raw``, ``<mod>/tokens``, ``_crops/params``) lives
``<path>_record``: ``(num_shards, 2)`` uint64, one chunk per shard (so processes owning different shards never
share an object). Row ``s`` is written when shard ``s`` is marked done, after its data and before its done
flag:

* column 0: a 64-bit BLAKE2b digest of the shard's values as read back from the store (numbers: their
  little-endian bytes; JSON strings: each UTF-8 text prefixed by its 8-byte length), never 0;
* column 1: the size in bytes of the shard's stored object (0 where zarr stored none: every value equals the
  fill value).

A crc32c per chunk (the codec of every array) protects the bytes that exist; the record also catches what
checksums cannot: a deleted shard object (zarr reads it back as fill values), one replaced by another valid
shard, or a truncation that removed whole chunks. A done shard whose row is all zeros was marked by a version
of fourm that kept no records: it is reported as unverified, not as damaged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from .errors import CorruptDataError
from .raw import is_text_array

RECORD_SUFFIX = "_record"


def record_path(data_path: str) -> str:
    return data_path + RECORD_SUFFIX


def update_hash(h: Any, data: np.ndarray, text: bool) -> None:
    """Feed a block of values to hash ``h``: text values length-prefixed in order, numbers as little-endian
    bytes (the record digests and ``fourm inspect``'s sha256 hash values the same way)."""
    if text:
        for value in data.reshape(-1).tolist():
            b = str(value).encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    else:
        data = np.ascontiguousarray(data)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        h.update(data.tobytes())


def digest_values(data: np.ndarray, text: bool) -> int:
    """64-bit digest of a block of values (never 0, which marks 'no record')."""
    h = hashlib.blake2b(digest_size=8)
    update_hash(h, data, text)
    return int.from_bytes(h.digest(), "little") or 1


def shard_key(arr: zarr.Array, shard: int) -> str:
    """Store key of the object holding shard ``shard`` of ``arr`` (one shard spans all trailing dims)."""
    coords = (int(shard), *([0] * (arr.ndim - 1)))
    return f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}"


def object_size(arr: zarr.Array, shard: int) -> int:
    """Bytes of shard ``shard``'s stored object, 0 when there is none."""
    store = arr.store
    key = shard_key(arr, shard)
    if not sync(store.exists(key)):
        return 0
    return int(sync(store.getsize(key)))


def delete_object(arr: zarr.Array, shard: int) -> None:
    """Remove shard ``shard``'s stored object (whatever a killed writer left there) so that the next write of
    the shard starts from nothing instead of decoding a torn object."""
    store = arr.store
    key = shard_key(arr, shard)
    if sync(store.exists(key)):
        sync(store.delete(key))


def compute(arr: zarr.Array, rng: range, shard: int) -> tuple[int, int]:
    """``(digest, object bytes)`` of shard ``shard`` (samples ``rng``) as stored now."""
    data = np.asarray(arr[rng.start:rng.stop])
    return digest_values(data, is_text_array(arr)), object_size(arr, shard)


def check_object(arr: zarr.Array, shard: int, row: np.ndarray) -> str | None:
    """What is wrong with shard ``shard``'s stored object against its recorded ``row`` (None when it matches
    or when there is no record)."""
    want_bytes = int(row[1])
    if int(row[0]) == 0 and want_bytes == 0:
        return None
    have_bytes = object_size(arr, shard)
    if want_bytes and not have_bytes:
        return f"its stored object {shard_key(arr, shard)} is missing (the record says {want_bytes} bytes)"
    if have_bytes != want_bytes:
        return f"its stored object {shard_key(arr, shard)} has {have_bytes} bytes, the record says {want_bytes}"
    return None


def check_values(data: np.ndarray, text: bool, row: np.ndarray) -> str | None:
    """What is wrong with a shard's decoded values against its recorded ``row`` (None: match, or no record)."""
    if int(row[0]) and digest_values(data, text) != int(row[0]):
        return "its values differ from the ones recorded when it was written"
    return None


def new_record_array(group: zarr.Group, data_path: str, num_shards: int, overwrite: bool) -> Any:
    return group.create_array(record_path(data_path), shape=(num_shards, 2), chunks=(1, 2), dtype="uint64",
                              fill_value=0, overwrite=overwrite)


def done_path(data_path: str) -> str:
    """The completion record of a data array: ``<name>/<what>_done``; ``_crops/done`` for the crops."""
    return "_crops/done" if data_path == "_crops/params" else f"{data_path}_done"


def done_key(data_path: str) -> tuple[str, str]:
    name, _, what = data_path.partition("/")
    return (name, what)


class RecordKeeping:
    """Marking shards done with their records, and the checks that use them (mixed into ``ShardedArrays``,
    whose arrays, caches and geometry these methods use)."""

    url: str
    samples_per_shard: int
    _group: zarr.Group
    _done_cache: dict[tuple[str, str], np.ndarray]
    _record_cache: dict[str, np.ndarray | None]
    _present: dict[str, set[int]]

    def _finish(self, data_path: str, shard: int, value: bool = True) -> None:
        flags = self._array(done_path(data_path))
        if value:
            arr = self._array(data_path)
            try:
                row = compute(arr, self.shards()[shard], shard)
            except Exception as exc:  # noqa: BLE001 - what was just written does not read back
                raise CorruptDataError(
                    f"store {self.url}: shard {shard} of {data_path!r} does not read back after it was written "
                    f"({type(exc).__name__}: {exc}); it is not marked done, so re-running the job redoes it"
                ) from exc
            rec = self._array(record_path(data_path), missing_ok=True)
            if rec is None:
                rec = new_record_array(self._group, data_path, self.num_shards, overwrite=False)
            rec[shard] = np.asarray(row, dtype=np.uint64)
            self._record_cache.pop(data_path, None)
        flags[shard] = value
        self._done_cache.pop(done_key(data_path), None)

    def shard_records(self, data_path: str) -> np.ndarray | None:
        """The per-shard records ``(num_shards, 2)`` of a data array (None for a store that keeps none)."""
        if data_path not in self._record_cache:
            rec = self._array(record_path(data_path), missing_ok=True)
            self._record_cache[data_path] = None if rec is None else np.asarray(rec[:], dtype=np.uint64)
        return self._record_cache[data_path]

    def _clear_covered(self, arr: zarr.Array, start: int, stop: int) -> None:
        """Delete the stored objects of the shards that ``start .. stop - 1`` covers completely: they are about
        to be rewritten whole, and a torn object left by a killed writer must not be decoded."""
        for s in self._covered_shards(start, stop):
            delete_object(arr, s)
        self._present.pop(arr.path, None)

    def _check_present(self, arr: zarr.Array, indices: np.ndarray) -> None:
        """Raise when a done shard recorded with a stored object has none (zarr would read fill values)."""
        rec = self.shard_records(arr.path)
        if rec is None or not indices.size:
            return
        seen = self._present.setdefault(arr.path, set())
        shards = [s for s in np.unique(indices // self.samples_per_shard).tolist() if s not in seen and int(rec[s, 1])]
        if not shards:
            return
        flags = self._array(done_path(arr.path), missing_ok=True)
        done = np.zeros(len(rec), bool) if flags is None else np.asarray(flags[:], dtype=bool)
        for s in shards:
            if not done[s]:
                continue
            if not object_size(arr, s):
                raise CorruptDataError(
                    f"store {self.url}: array {arr.path!r} is missing the stored object of shard {s} (samples "
                    f"{s * self.samples_per_shard}..); its record says {int(rec[s, 1])} bytes were written. Run "
                    f"`fourm inspect {self.url} --repair`, then the job that wrote it, to redo it"
                )
            seen.add(s)


__all__ = ["RECORD_SUFFIX", "RecordKeeping", "check_object", "check_values", "compute", "delete_object",
           "digest_values", "done_key", "done_path", "new_record_array", "object_size", "record_path", "shard_key"]
