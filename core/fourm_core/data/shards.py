"""The zarr layer under :class:`fourm_core.data.store.Store`: per-sample arrays grouped into shards.

:class:`ShardedArrays` creates, finds and deletes the arrays of a store's group (one chunk per sample, one zarr
shard per ``samples_per_shard`` samples, Blosc-zstd plus a crc32c checksum), keeps the completion record
``<name>/<what>_done`` (one bool per shard) of each with its per-shard record (:mod:`.records`), and reads
samples in consecutive runs, turning a failed checksum or a missing shard object into :class:`CorruptDataError`
naming the array and the samples.

Crash safety: the completion record of an array is created before the array (a kill in between leaves no data
array, which the next run creates), a shard is marked done only after its data and its record, and a write that
covers a whole shard first deletes the shard's stored object, so a job can always redo a shard that is not marked
done, whatever a killed writer left on disk. Root attributes are read afresh before every update, so that two
handles of one store (or two modalities of one run) never drop each other's records.

zarr behaviours relied on (zarr 3.1): the sharding codec stores one object per shard under the key
``<path>/c/<shard>/0..`` and decodes an existing object before writing into it; chunks equal to the fill value
are not stored (a shard object may legitimately be absent); missing objects read back as the fill value;
``create_array(attributes=...)`` writes the attributes in the same ``zarr.json`` as the array.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from . import records
from .records import RecordKeeping
from .errors import CorruptDataError, IncompleteDataError, StoreError
from .raw import is_text_array

log = logging.getLogger(__name__)

_WHATS = ("raw", "tokens")
#: per-sample size up to which batched reads use one orthogonal selection (see ShardedArrays._read)
_OINDEX_MAX_ITEM_BYTES = 32 * 1024


def _codecs(level: int = 3) -> list[Any]:
    return [BloscCodec(cname="zstd", clevel=level, shuffle="shuffle"), Crc32cCodec()]


def zarr_store(url: str, mode: str, storage_options: Mapping[str, Any] | None) -> Any:
    """Map a path or fsspec URL to a zarr store object (read-only fsspec stores through
    :class:`fourm_core.data.prefetch.PrefetchStore` unless its ``fourm_prefetch`` option turns it off)."""
    read_only = mode == "r"
    url = os.fspath(url)
    if url.endswith(".zip"):
        if not read_only:
            raise StoreError(
                f"zip store {url}: zip stores are read-only in fourm (zip entries cannot be rewritten); write a "
                f"directory store, then zip its contents (cd store.zarr && zip -r0 ../store.zip .)"
            )
        path = url[len("file://"):] if url.startswith("file://") else url
        if "://" in path:
            raise StoreError(f"zip store {url}: only local zip files are supported")
        return zarr.storage.ZipStore(path, mode="r")
    if "://" in url and not url.startswith("file://"):
        from .prefetch import OPTION_KEY, wrap

        options = dict(storage_options or {})
        prefetch = options.pop(OPTION_KEY, None)
        store = zarr.storage.FsspecStore.from_url(url, read_only=read_only, storage_options=options)
        return wrap(store, url, mode, prefetch)  # read-only: whole shards, read ahead, cached
    path = url[len("file://"):] if url.startswith("file://") else url
    return zarr.storage.LocalStore(path, read_only=read_only)


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted-or-not indices into maximal runs of consecutive values: [(start, stop), ...]."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [indices.size]])
    return [(int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops)]


_done_path = records.done_path
_done_key = records.done_key


# --------------------------------------------------------------------------------------------------
class ShardedArrays(RecordKeeping):
    """The arrays of one store's zarr group, their shards and completion records (base of ``Store``)."""

    def __init__(self, group: zarr.Group, url: str, mode: str, *, num_samples: int, samples_per_shard: int):
        self._group = group
        self.url = url
        self.mode = mode
        self.num_samples: int = num_samples
        self.samples_per_shard: int = samples_per_shard
        self._arrays: dict[str, zarr.Array] = {}
        self._done_cache: dict[tuple[str, str], np.ndarray] = {}
        self._record_cache: dict[str, np.ndarray | None] = {}
        self._present: dict[str, set[int]] = {}  # shards whose recorded object was seen, per array

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.samples_per_shard)

    def shards(self) -> list[range]:
        """The sample range of every shard, in order."""
        s = self.samples_per_shard
        return [range(i * s, min((i + 1) * s, self.num_samples)) for i in range(self.num_shards)]

    def shard_of(self, index: int) -> int:
        return int(index) // self.samples_per_shard

    # -- metadata ---------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    def _refresh(self) -> None:
        """Re-read the root group's metadata (another handle or process may have updated its attributes)."""
        if self.mode != "r":
            self._group = zarr.open_group(self._group.store_path, mode="r+", zarr_format=3, use_consolidated=False)

    def modalities(self) -> dict[str, dict[str, Any]]:
        """Per-modality metadata recorded by the jobs that wrote them."""
        self._refresh()
        return dict(self._group.attrs.get("modalities", {}))

    def _update_root(self, **fields: Any) -> None:
        """Set root attributes (on a fresh read of the root's metadata)."""
        self._refresh()
        self._group.attrs.update(fields)

    def _set_modality_meta(self, name: str, **fields: Any) -> None:
        self._update_modalities(lambda mods: mods.setdefault(name, {}).update(fields))

    def _update_modalities(self, change: Any) -> None:
        """Apply ``change(mods)`` to a fresh copy of the root's ``modalities`` attribute and write it back."""
        mods = {k: dict(v) for k, v in self.modalities().items()}
        change(mods)
        self._group.attrs["modalities"] = mods

    def _require_writable(self, what: str) -> None:
        if self.mode == "r":
            raise StoreError(f"store {self.url} is open read-only; open it with mode='r+' to {what}")

    def set_num_samples(self, num_samples: int) -> None:
        """Shrink the store to ``num_samples`` (ingest does this after skipping unreadable files).

        The root attribute is written first, then the arrays are resized: a kill in between leaves arrays
        longer than the store, which reads ignore and the next call (idempotent) shrinks."""
        self._require_writable("resize it")
        old_shards = self.num_shards
        self.num_samples = int(num_samples)
        self._update_root(num_samples=int(num_samples))
        for path in self._all_data_arrays():
            arr = self._group[path]
            if arr.shape[0] != num_samples:
                arr.resize((num_samples, *arr.shape[1:]))
        for path in self._all_done_arrays():
            arr = self._group[path]
            if arr.shape[0] != self.num_shards:
                arr.resize((self.num_shards, *arr.shape[1:]))
        self._arrays.clear()
        self._done_cache.clear()
        self._record_cache.clear()
        self._present.clear()
        log.debug("store %s resized from %d shards to %d", self.url, old_shards, self.num_shards)

    def _all_data_arrays(self) -> list[str]:
        out = []
        for gname, sub in self._group.groups():
            for aname, arr in sub.arrays():
                if not aname.endswith(("_done", records.RECORD_SUFFIX)) and aname != "done":
                    out.append(f"{gname}/{aname}")
        return out

    def _all_done_arrays(self) -> list[str]:
        out = []
        for gname, sub in self._group.groups():
            for aname, _ in sub.arrays():
                if aname.endswith(("_done", records.RECORD_SUFFIX)) or aname == "done":
                    out.append(f"{gname}/{aname}")
        return out

    # -- arrays -----------------------------------------------------------------------------------
    def _path(self, name: str, what: str) -> str:
        if what not in _WHATS:
            raise StoreError(f"array kind must be one of {_WHATS}, got {what!r}")
        return f"{name}/{what}"

    def has(self, name: str, what: str = "raw") -> bool:
        """Whether the array ``<name>/<what>`` exists (it may be incomplete)."""
        return self._array(self._path(name, what), missing_ok=True) is not None

    def _array(self, path: str, *, missing_ok: bool = False) -> zarr.Array | None:
        arr = self._arrays.get(path)
        if arr is not None:
            return arr
        try:
            arr = self._group[path]
        except KeyError:
            if missing_ok:
                return None
            have = ", ".join(sorted(self.modalities())) or "none"
            raise StoreError(
                f"store {self.url} has no array {path!r} (modalities in the store: {have}); run the job that "
                f"writes it (fourm ingest / fourm label / fourm tokenize)"
            ) from None
        if not isinstance(arr, zarr.Array):
            raise StoreError(f"store {self.url}: {path!r} is a group, expected an array")
        self._arrays[path] = arr
        return arr

    def array(self, name: str, what: str = "raw") -> zarr.Array:
        """The zarr array ``<name>/<what>`` (raises naming the store if it is missing)."""
        return self._array(self._path(name, what))

    def _create(self, path: str, shape: tuple[int, ...], dtype: Any, *, level: int = 3, fill_value: Any = None,
                overwrite: bool = False, attributes: dict[str, Any] | None = None) -> zarr.Array:
        chunk = (1, *shape[1:])
        kwargs: dict[str, Any] = {}
        if fill_value is not None:
            kwargs["fill_value"] = fill_value
        arr = self._group.create_array(
            path, shape=shape, chunks=chunk, shards=(self.samples_per_shard, *shape[1:]), dtype=dtype,
            compressors=_codecs(level), overwrite=overwrite, attributes=attributes, **kwargs,
        )
        self._arrays[path] = arr
        return arr

    def _create_tracked(self, path: str, shape: tuple[int, ...], dtype: Any, **kwargs: Any) -> zarr.Array:
        """A data array with its completion record and per-shard record, created record-first: a kill between
        the two leaves a record without data (the data array is created by the next run), never data without a
        record."""
        from .jobkit import kill_point

        self._create_done_for(path, overwrite=True)
        kill_point(f"create:{path}")
        return self._create(path, shape, dtype, **kwargs)

    def _create_done_for(self, data_path: str, overwrite: bool) -> None:
        # one chunk per shard so that processes owning different shards never touch the same object
        self._group.create_array(_done_path(data_path), shape=(self.num_shards,), chunks=(1,), dtype="bool",
                                 fill_value=False, overwrite=overwrite)
        records.new_record_array(self._group, data_path, self.num_shards, overwrite)
        self._forget(data_path)

    def _ensure_done_for(self, data_path: str) -> None:
        """Create the completion record of an existing data array that lacks one (all shards not done)."""
        if self._array(_done_path(data_path), missing_ok=True) is None:
            log.warning("store %s: %s has no completion record; every shard of it will be redone", self.url, data_path)
            self._create_done_for(data_path, overwrite=True)

    def _forget(self, data_path: str) -> None:
        for path in (data_path, _done_path(data_path), records.record_path(data_path)):
            self._arrays.pop(path, None)
        self._done_cache.pop(_done_key(data_path), None)
        self._record_cache.pop(data_path, None)
        self._present.pop(data_path, None)

    def _delete_tracked(self, data_path: str) -> None:
        """Delete a data array and its records (the data first: a kill in between leaves a record only)."""
        for path in (data_path, _done_path(data_path), records.record_path(data_path)):
            self._delete(path)
        self._forget(data_path)

    def _delete(self, path: str) -> None:
        if path in self._group:
            del self._group[path]
        self._arrays.pop(path, None)

    # -- completion records ---------------------------------------------------------------------------
    def done(self, name: str, what: str = "raw", *, refresh: bool = True) -> np.ndarray:
        """Bool array (num_shards,): which shards of ``<name>/<what>`` are complete."""
        key = (name, what)
        if not refresh and key in self._done_cache:
            return self._done_cache[key]
        arr = self._array(f"{name}/{what}_done", missing_ok=True)
        flags = np.zeros(self.num_shards, dtype=bool) if arr is None else np.asarray(arr[:], dtype=bool)
        self._done_cache[key] = flags
        return flags

    def is_done(self, name: str, what: str, shard: int) -> bool:
        return bool(self.done(name, what)[shard])

    def mark_done(self, name: str, what: str, shard: int, value: bool = True) -> None:
        """Record shard ``shard`` of ``<name>/<what>`` as complete (written last, after the data and the shard's
        record), or, with ``value=False``, as to be redone."""
        self._require_writable("record completion")
        self._finish(self._path(name, what), shard, value)

    def complete_samples(self, name: str, what: str = "raw") -> int:
        flags = self.done(name, what)
        return int(sum(len(r) for r, d in zip(self.shards(), flags) if d))

    def is_complete(self, name: str, what: str = "raw") -> bool:
        return self.has(name, what) and bool(self.done(name, what).all())

    def _check_complete(self, name: str, what: str, indices: np.ndarray) -> None:
        flags = self.done(name, what, refresh=False)
        shards = np.unique(indices // self.samples_per_shard)
        if flags[shards].all():
            return
        flags = self.done(name, what, refresh=True)
        missing = [int(s) for s in shards if not flags[s]]
        if missing:
            job = "fourm label" if what == "raw" else "fourm tokenize"
            raise IncompleteDataError(
                f"store {self.url}: {name}/{what} is not complete for shard(s) {missing[:8]}"
                f"{'...' if len(missing) > 8 else ''} (samples {missing[0] * self.samples_per_shard}..); run "
                f"`{job} {self.url} --modalities {name}` to finish it"
            )

    def _covered_shards(self, start: int, stop: int) -> list[int]:
        """The non-empty shards whose samples all lie in ``start .. stop - 1``."""
        return [s for s, r in enumerate(self.shards()) if r.start >= start and r.stop <= stop and len(r)]

    def _mark_covered(self, name: str, what: str, start: int, stop: int) -> None:
        for s in self._covered_shards(start, stop):
            self.mark_done(name, what, s)

    # -- reading with checksum errors named -----------------------------------------------------------
    def _read(self, arr: zarr.Array, indices: np.ndarray, extra: tuple = ()) -> np.ndarray:
        """Read ``arr[indices, *extra]`` as consecutive runs; a decode failure names array and samples."""
        self._check_present(arr, indices)
        try:
            runs = _runs(indices)
            itemsize = 64 if is_text_array(arr) else np.dtype(arr.dtype).itemsize
            item_bytes = int(np.prod(arr.shape[1 + len(extra):], dtype=np.int64)) * itemsize
            # small items (tokens, crops, vectors): one orthogonal selection fetches every chunk concurrently;
            # zarr 3.1 is slow on orthogonal selections of large sharded chunks (images), so slice those per run
            if len(runs) > 2 and item_bytes <= _OINDEX_MAX_ITEM_BYTES:
                parts = [np.asarray(arr.get_orthogonal_selection((indices, *extra)))]
            else:
                parts = [np.asarray(arr[(slice(a, b), *extra)]) for a, b in runs]
        except Exception as exc:  # noqa: BLE001 - identify the corrupt samples, then re-raise
            bad = []
            for i in indices.tolist():
                try:
                    arr[(slice(i, i + 1), *extra)]
                except Exception:  # noqa: BLE001
                    bad.append(int(i))
            if not bad:
                raise
            raise CorruptDataError(
                f"store {self.url}: array {arr.path!r} is corrupt for samples {bad} (shard(s) "
                f"{sorted({b // self.samples_per_shard for b in bad})}): {type(exc).__name__}: {exc}. Re-run the job "
                f"that wrote it with --overwrite, or restore the store from a copy"
            ) from exc
        if not parts:
            return np.asarray(arr[(slice(0, 0), *extra)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @staticmethod
    def _as_indices(indices: int | Iterable[int] | range | slice, n: int) -> np.ndarray:
        if isinstance(indices, slice):
            return np.arange(n)[indices]
        if isinstance(indices, (int, np.integer)):
            return np.asarray([int(indices)], dtype=np.int64)
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        return idx.reshape(-1)

    def _checked_indices(self, name: str, what: str, indices: int | Iterable[int] | range | slice,
                         check_complete: bool) -> np.ndarray:
        """``indices`` as an int64 array, checked in range and (with ``check_complete``) against the completion
        record of ``<name>/<what>``."""
        idx = self._as_indices(indices, self.num_samples)
        self._check_range(idx, name)
        if check_complete and idx.size:
            self._check_complete(name, what, idx)
        return idx

    def _check_range(self, idx: np.ndarray, name: str) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise StoreError(
                f"store {self.url}: sample indices for {name!r} must be in [0, {self.num_samples}), got "
                f"{int(idx.min())}..{int(idx.max())}"
            )
