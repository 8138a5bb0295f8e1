"""One zarr 3 store per dataset: the on-disk format of fourm (``docs/dataset-format.md``).

Layout (format version :data:`FORMAT_VERSION`)::

    store.zarr/                     root group; attrs: fourm_format_version, num_samples, samples_per_shard,
                                    raw_size, modalities {name: {plugin, version, kind, raw, tokens}}
      <mod>/raw                     (N, *shape) per the plugin's StorageSpec, or (N,) UTF-8 JSON strings
      <mod>/raw_done                (num_shards,) bool, one chunk per shard, set after the shard's data
      <mod>/tokens                  (N, crops, num_tokens) int32
      <mod>/tokens_done             (num_shards,) bool
      _crops/params                 (N, crops, 5) int32: top, left, height, width, flip (raw pixel coords)
      _crops/done                   (num_shards,) bool
      _samples/source               (N,) str: the file each sample was ingested from

Every data array has one chunk per sample, grouped into shards of ``samples_per_shard`` samples, with
Blosc-zstd compression and a crc32c checksum, so that a corrupted chunk raises :class:`CorruptDataError`
naming the array and the samples instead of returning garbage.

Python API (used by the jobs, the loader, the tokenizer trainer and the plugin testing kit)::

    store = Store.create(url, num_samples, samples_per_shard=64, raw_size=256)   # url: path or fsspec URL
    store = Store.open(url, mode="r")                                          # "r" or "r+"
    store.write_raw(spec, start, raws)          # validates against spec.storage; marks fully written shards done
    store.read_raw(name, indices) -> list[raw]  # numpy arrays, or JSON values for dtype "json"
    store.shards() -> list[range]               # sample ranges of the shards
    store.is_done(name, "raw"|"tokens", shard), store.mark_done(...), store.complete_samples(name, "raw")
    store.write_tokens(spec, start, tokens), store.read_tokens(name, indices, crop=None)
    store.write_crops(start, params), store.read_crops(indices)
    roundtrip_raw(spec, raws, tmp_dir) -> list[raw]

Writers must own whole shards: zarr 3 has no locks, and two processes writing inside one shard lose data.
The process that creates arrays and metadata (rank 0 in the jobs) must finish before others write.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from fourm_registry import FourmError, ModalitySpec, StorageSpec

log = logging.getLogger(__name__)

#: Version of the on-disk layout written by this code. Readers refuse stores written by a newer version.
FORMAT_VERSION = 1
DEFAULT_RAW_SIZE = 256
DEFAULT_SAMPLES_PER_SHARD = 64
#: Crop parameter columns of ``_crops/params``.
CROP_FIELDS = ("top", "left", "height", "width", "flip")
_WHATS = ("raw", "tokens")
#: per-sample size up to which batched reads use one orthogonal selection (see Store._read)
_OINDEX_MAX_ITEM_BYTES = 32 * 1024


class StoreError(FourmError):
    """A dataset store is missing, malformed, or used in a way its format does not allow."""


class FormatVersionError(StoreError):
    """The store was written by a newer (or unknown) version of the format."""


class CorruptDataError(StoreError):
    """Stored data failed its checksum or could not be decoded."""


class IncompleteDataError(StoreError):
    """Samples were requested from a shard that no job has finished writing."""


# --------------------------------------------------------------------------------------------------
# helpers
def _codecs(level: int = 3) -> list[Any]:
    return [BloscCodec(cname="zstd", clevel=level, shuffle="shuffle"), Crc32cCodec()]


def _zarr_store(url: str, mode: str, storage_options: Mapping[str, Any] | None) -> Any:
    """Map a path or fsspec URL to a zarr store object."""
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
        return zarr.storage.FsspecStore.from_url(url, read_only=read_only, storage_options=dict(storage_options or {}))
    path = url[len("file://"):] if url.startswith("file://") else url
    return zarr.storage.LocalStore(path, read_only=read_only)


def storage_shape(spec: ModalitySpec, raw_size: int) -> tuple[int, ...]:
    """Per-sample shape of ``spec``'s raw array in a store of resolution ``raw_size``.

    Image-like storage shapes are declared at the default raw size: a shape ``(256, 256, C)`` is stored as
    ``(raw_size, raw_size, C)``. Every other shape is stored as declared.
    """
    storage = _storage_of(spec)
    shape = tuple(storage.shape)
    if len(shape) == 3 and shape[:2] == (DEFAULT_RAW_SIZE, DEFAULT_RAW_SIZE):
        return (raw_size, raw_size, shape[2])
    return shape


def _storage_of(spec: ModalitySpec) -> StorageSpec:
    if spec.storage is None:
        raise StoreError(
            f"modality {spec.name!r} (plugin {spec.plugin}) declares no StorageSpec, so it has no raw data to "
            f"store; set ModalitySpec.storage in the plugin"
        )
    return spec.storage


def _conform(spec: ModalitySpec, shape: tuple[int, ...], raw: Any, index: int) -> Any:
    """Validate one raw sample against the storage spec; return what to store (array or JSON text)."""
    storage = _storage_of(spec)
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
    if dst == "f" and not np.all(np.isfinite(arr)):
        raise StoreError(f"modality {spec.name!r}: raw sample {index} contains NaN or inf")
    return arr.astype(dtype)


def is_text_array(arr: Any) -> bool:
    """Whether a zarr array holds strings (the JSON documents of ``json`` modalities)."""
    code = np.dtype(arr.dtype).kind  # numpy kind code: O object, U unicode, T StringDType
    return code in "OUT"


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted-or-not indices into maximal runs of consecutive values: [(start, stop), ...]."""
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [indices.size]])
    return [(int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops)]


# --------------------------------------------------------------------------------------------------
class Store:
    """A fourm dataset store (see the module docstring for the layout)."""

    def __init__(self, group: zarr.Group, url: str, mode: str):
        self._group = group
        self.url = url
        self.mode = mode
        attrs = dict(group.attrs)
        version = attrs.get("fourm_format_version")
        if version is None:
            raise StoreError(
                f"{url} is not a fourm dataset store (its root has no 'fourm_format_version' attribute); create "
                f"one with `fourm ingest SRC {url}` or Store.create()"
            )
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise FormatVersionError(
                f"store {url} has fourm_format_version {version!r}, but this fourm-core reads versions up to "
                f"{FORMAT_VERSION}; upgrade fourm-core (pip install -U fourm-core) to read it"
            )
        self.format_version: int = version
        self.num_samples: int = int(attrs["num_samples"])
        self.samples_per_shard: int = int(attrs["samples_per_shard"])
        self.raw_size: int = int(attrs["raw_size"])
        self._arrays: dict[str, zarr.Array] = {}
        self._done_cache: dict[tuple[str, str], np.ndarray] = {}

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def create(cls, url: str, num_samples: int, *, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
               raw_size: int = DEFAULT_RAW_SIZE, overwrite: bool = False,
               storage_options: Mapping[str, Any] | None = None) -> Store:
        """Create an empty store (no modality yet). ``overwrite`` deletes an existing one."""
        url = os.fspath(url)
        for value, what in ((num_samples, "num_samples"), (samples_per_shard, "samples_per_shard"),
                            (raw_size, "raw_size")):
            if not isinstance(value, (int, np.integer)) or value < (0 if what == "num_samples" else 1):
                raise StoreError(f"store {url}: {what} must be a {'non-negative' if what == 'num_samples' else 'positive'} integer, got {value!r}")
        zstore = _zarr_store(url, "w", storage_options)
        try:
            group = zarr.open_group(zstore, mode="w" if overwrite else "w-", zarr_format=3)
        except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
            raise StoreError(f"store {url} already exists; pass overwrite=True (--overwrite) to replace it") from exc
        group.attrs.update({
            "fourm_format_version": FORMAT_VERSION,
            "num_samples": int(num_samples),
            "samples_per_shard": int(samples_per_shard),
            "raw_size": int(raw_size),
            "modalities": {},
        })
        return cls(group, url, "r+")

    @classmethod
    def open(cls, url: str, mode: str = "r", *, storage_options: Mapping[str, Any] | None = None) -> Store:
        """Open an existing store; ``mode`` is ``"r"`` (read) or ``"r+"`` (read and write)."""
        url = os.fspath(url)
        if mode not in ("r", "r+"):
            raise StoreError(f"store {url}: mode must be 'r' or 'r+', got {mode!r} (use Store.create to make one)")
        zstore = _zarr_store(url, mode, storage_options)
        try:
            group = zarr.open_group(zstore, mode=mode, zarr_format=3, use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
            raise StoreError(f"no fourm dataset store at {url}; create one with `fourm ingest SRC {url}`") from exc
        return cls(group, url, mode)

    def __repr__(self) -> str:
        return f"Store({self.url!r}, num_samples={self.num_samples}, modalities={sorted(self.modalities())})"

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

    def modalities(self) -> dict[str, dict[str, Any]]:
        """Per-modality metadata recorded by the jobs that wrote them."""
        return dict(self._group.attrs.get("modalities", {}))

    def _set_modality_meta(self, name: str, **fields: Any) -> None:
        mods = self.modalities()
        entry = dict(mods.get(name, {}))
        entry.update(fields)
        mods[name] = entry
        self._group.attrs["modalities"] = mods

    def _require_writable(self, what: str) -> None:
        if self.mode == "r":
            raise StoreError(f"store {self.url} is open read-only; open it with mode='r+' to {what}")

    def set_num_samples(self, num_samples: int) -> None:
        """Shrink the store to ``num_samples`` (ingest does this after skipping unreadable files)."""
        self._require_writable("resize it")
        for path in self._all_data_arrays():
            arr = self._group[path]
            arr.resize((num_samples, *arr.shape[1:]))
        self._arrays.clear()
        self._done_cache.clear()
        old_shards = self.num_shards
        self.num_samples = int(num_samples)
        self._group.attrs["num_samples"] = int(num_samples)
        for path in self._all_done_arrays():
            arr = self._group[path]
            if arr.shape[0] != self.num_shards:
                arr.resize((self.num_shards,))
        log.debug("store %s resized from %d shards to %d", self.url, old_shards, self.num_shards)

    def _all_data_arrays(self) -> list[str]:
        out = []
        for gname, sub in self._group.groups():
            for aname, arr in sub.arrays():
                if not aname.endswith("_done") and aname != "done":
                    out.append(f"{gname}/{aname}")
        return out

    def _all_done_arrays(self) -> list[str]:
        out = []
        for gname, sub in self._group.groups():
            for aname, _ in sub.arrays():
                if aname.endswith("_done") or aname == "done":
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
                overwrite: bool = False) -> zarr.Array:
        chunk = (1, *shape[1:])
        kwargs: dict[str, Any] = {}
        if fill_value is not None:
            kwargs["fill_value"] = fill_value
        arr = self._group.create_array(
            path, shape=shape, chunks=chunk, shards=(self.samples_per_shard, *shape[1:]), dtype=dtype,
            compressors=_codecs(level), overwrite=overwrite, **kwargs,
        )
        self._arrays[path] = arr
        return arr

    def _create_done(self, name: str, what: str, overwrite: bool) -> None:
        path = f"{name}/{what}_done"
        # one chunk per shard so that processes owning different shards never touch the same object
        self._group.create_array(path, shape=(self.num_shards,), chunks=(1,), dtype="bool", fill_value=False,
                                 overwrite=overwrite)
        self._done_cache.pop((name, what), None)

    def _delete(self, path: str) -> None:
        if path in self._group:
            del self._group[path]
        self._arrays.pop(path, None)

    def ensure_raw(self, spec: ModalitySpec, *, overwrite: bool = False) -> zarr.Array:
        """Create ``<spec.name>/raw`` (and its completion record) if needed; check it matches ``spec``.

        ``overwrite`` deletes existing raw data and its completion record first.
        """
        self._require_writable(f"write modality {spec.name!r}")
        storage = _storage_of(spec)
        shape = storage_shape(spec, self.raw_size)
        path = self._path(spec.name, "raw")
        if overwrite:
            self._delete(path)
            self._delete(f"{spec.name}/raw_done")
            self._done_cache.pop((spec.name, "raw"), None)
        arr = self._array(path, missing_ok=True)
        if arr is None:
            if storage.is_json:
                arr = self._create(path, (self.num_samples,), str, level=storage.compression_level)
            else:
                fill = storage.fill_value if storage.fill_value is not None else 0
                arr = self._create(path, (self.num_samples, *shape), storage.dtype, level=storage.compression_level,
                                   fill_value=fill)
            self._create_done(spec.name, "raw", overwrite=True)
        else:
            self._check_raw_array(spec, arr, shape)
        self._set_modality_meta(spec.name, plugin=spec.plugin, version=spec.version, kind=spec.kind,
                                raw={"dtype": storage.dtype, "shape": list(shape)})
        return arr

    def _check_raw_array(self, spec: ModalitySpec, arr: zarr.Array, shape: tuple[int, ...]) -> None:
        storage = _storage_of(spec)
        if storage.is_json:
            ok = arr.ndim == 1 and is_text_array(arr)
            want = "JSON strings"
        else:
            ok = tuple(arr.shape[1:]) == shape and np.dtype(arr.dtype) == np.dtype(storage.dtype)
            want = f"{storage.dtype} {shape}"
        if not ok:
            raise StoreError(
                f"store {self.url}: {spec.name}/raw holds {arr.dtype} {tuple(arr.shape[1:])} per sample but plugin "
                f"{spec.plugin} {spec.version} now stores {want}; relabel with --overwrite"
            )

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
        """Record shard ``shard`` of ``<name>/<what>`` as complete (written last, after the data)."""
        self._require_writable("record completion")
        arr = self._array(f"{name}/{what}_done")
        arr[shard] = value
        self._done_cache.pop((name, what), None)

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

    # -- reading with checksum errors named -----------------------------------------------------------
    def _read(self, arr: zarr.Array, indices: np.ndarray, extra: tuple = ()) -> np.ndarray:
        """Read ``arr[indices, *extra]`` as consecutive runs; a decode failure names array and samples."""
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

    def _check_range(self, idx: np.ndarray, name: str) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise StoreError(
                f"store {self.url}: sample indices for {name!r} must be in [0, {self.num_samples}), got "
                f"{int(idx.min())}..{int(idx.max())}"
            )

    # -- raw ------------------------------------------------------------------------------------------
    def write_raw(self, spec: ModalitySpec, start: int, raws: Sequence[Any], *, mark_done: bool = True) -> None:
        """Write ``raws`` (validated against ``spec.storage``) as samples ``start ..``.

        Creates the array if needed. With ``mark_done``, every shard the call covers completely is recorded as
        complete. Callers must own the shards they write (one writer per shard).
        """
        arr = self._array(self._path(spec.name, "raw"), missing_ok=True)
        if arr is None:
            arr = self.ensure_raw(spec)
        self._require_writable(f"write modality {spec.name!r}")
        n = len(raws)
        if start < 0 or start + n > self.num_samples:
            raise StoreError(
                f"store {self.url}: writing {n} samples of {spec.name!r} at {start} exceeds num_samples "
                f"{self.num_samples}"
            )
        if n == 0:
            return
        shape = storage_shape(spec, self.raw_size)
        values = [_conform(spec, shape, r, start + i) for i, r in enumerate(raws)]
        if _storage_of(spec).is_json:
            data = np.empty(n, dtype=object)
            data[:] = values
        else:
            data = np.stack(values)
        arr[start:start + n] = data
        if mark_done:
            self._mark_covered(spec.name, "raw", start, start + n)

    def _mark_covered(self, name: str, what: str, start: int, stop: int) -> None:
        for s, r in enumerate(self.shards()):
            if r.start >= start and r.stop <= stop and len(r):
                self.mark_done(name, what, s)

    def read_raw(self, name: str, indices: int | Iterable[int] | slice, *, check_complete: bool = True) -> list[Any]:
        """Raw samples of modality ``name`` (numpy arrays, or JSON values), in the order of ``indices``.

        With ``check_complete`` (default), reading from a shard no job has finished raises
        :class:`IncompleteDataError`.
        """
        idx = self._as_indices(indices, self.num_samples)
        self._check_range(idx, name)
        if check_complete and idx.size:
            self._check_complete(name, "raw", idx)
        arr = self.array(name, "raw")
        data = self._read(arr, idx)
        if is_text_array(arr):
            out = []
            for i, text in zip(idx.tolist(), data.tolist()):
                if text == "" or text is None:
                    if check_complete:
                        raise IncompleteDataError(f"store {self.url}: {name}/raw has no value for sample {i}")
                    out.append(None)
                    continue
                try:
                    out.append(json.loads(text))
                except json.JSONDecodeError as exc:
                    raise CorruptDataError(f"store {self.url}: {name}/raw sample {i} is not valid JSON: {exc}") from exc
            return out
        return list(data)

    def read_raw_array(self, name: str, indices: int | Iterable[int] | slice, *,
                       check_complete: bool = True) -> np.ndarray:
        """Like :meth:`read_raw` for fixed-shape modalities, as one stacked array ``(n, *shape)``."""
        idx = self._as_indices(indices, self.num_samples)
        self._check_range(idx, name)
        if check_complete and idx.size:
            self._check_complete(name, "raw", idx)
        return self._read(self.array(name, "raw"), idx)

    # -- crops ----------------------------------------------------------------------------------------
    def ensure_crops(self, num_crops: int, *, seed: int, overwrite: bool = False) -> zarr.Array:
        """Create ``_crops/params`` (N, num_crops, 5) if needed; an existing one must match crops and seed."""
        self._require_writable("write crop parameters")
        if overwrite:
            self._delete("_crops/params")
            self._delete("_crops/done")
            self._done_cache.pop(("_crops", "params"), None)
        arr = self._array("_crops/params", missing_ok=True)
        if arr is None:
            arr = self._create("_crops/params", (self.num_samples, num_crops, len(CROP_FIELDS)), "int32")
            arr.attrs.update({"fields": list(CROP_FIELDS), "seed": int(seed), "num_crops": int(num_crops)})
            self._group.create_array("_crops/done", shape=(self.num_shards,), chunks=(1,), dtype="bool",
                                     fill_value=False, overwrite=True)
            self._done_cache.pop(("_crops", "params"), None)
        else:
            have_c, have_seed = int(arr.shape[1]), arr.attrs.get("seed")
            if have_c != num_crops or have_seed != seed:
                raise StoreError(
                    f"store {self.url} already has {have_c} crops per sample (seed {have_seed}); every modality of "
                    f"a sample must use the same crops: pass --crops {have_c} --seed {have_seed}, or --overwrite-crops "
                    f"to draw new crops (this deletes the tokens of every modality, which must be tokenized again)"
                )
        return arr

    def reset_crops(self) -> list[str]:
        """Delete the crop parameters and every modality's tokens (they were cut with those crops)."""
        self._require_writable("delete crops and tokens")
        dropped = []
        for gname, sub in list(self._group.groups()):
            if gname.startswith("_"):
                continue
            if "tokens" in sub:
                self._delete(f"{gname}/tokens")
                self._delete(f"{gname}/tokens_done")
                self._done_cache.pop((gname, "tokens"), None)
                dropped.append(gname)
                mods = self.modalities()
                if gname in mods:
                    mods[gname].pop("tokens", None)
                    self._group.attrs["modalities"] = mods
        self._delete("_crops/params")
        self._delete("_crops/done")
        return dropped

    @property
    def num_crops(self) -> int:
        arr = self._array("_crops/params", missing_ok=True)
        return 0 if arr is None else int(arr.shape[1])

    def crops_done(self) -> np.ndarray:
        arr = self._array("_crops/done", missing_ok=True)
        return np.zeros(self.num_shards, dtype=bool) if arr is None else np.asarray(arr[:], dtype=bool)

    def write_crops(self, start: int, params: np.ndarray, *, mark_done: bool = True) -> None:
        """Write crop parameters ``(n, crops, 5)`` for samples ``start ..``."""
        self._require_writable("write crop parameters")
        arr = self._array("_crops/params")
        params = np.asarray(params, dtype=np.int32)
        if params.ndim != 3 or params.shape[1:] != tuple(arr.shape[1:]):
            raise StoreError(f"store {self.url}: crop params must have shape (n, {arr.shape[1]}, 5), got {params.shape}")
        arr[start:start + len(params)] = params
        if mark_done:
            done = self._array("_crops/done")
            for s, r in enumerate(self.shards()):
                if r.start >= start and r.stop <= start + len(params) and len(r):
                    done[s] = True

    def read_crops(self, indices: int | Iterable[int] | slice) -> np.ndarray:
        """Crop parameters ``(n, crops, 5)`` int32 (top, left, height, width, flip)."""
        idx = self._as_indices(indices, self.num_samples)
        self._check_range(idx, "_crops")
        return self._read(self._array("_crops/params"), idx)

    # -- tokens ---------------------------------------------------------------------------------------
    def ensure_tokens(self, spec: ModalitySpec, num_crops: int, *, overwrite: bool = False,
                      tokenizer: str | None = None) -> zarr.Array:
        """Create ``<spec.name>/tokens`` (N, num_crops, num_tokens) int32 if needed; check an existing one."""
        self._require_writable(f"write tokens of {spec.name!r}")
        if not spec.num_tokens:
            raise StoreError(f"modality {spec.name!r} has no num_tokens; it cannot be tokenized")
        path = self._path(spec.name, "tokens")
        if overwrite:
            self._delete(path)
            self._delete(f"{spec.name}/tokens_done")
            self._done_cache.pop((spec.name, "tokens"), None)
        arr = self._array(path, missing_ok=True)
        if arr is None:
            arr = self._create(path, (self.num_samples, num_crops, spec.num_tokens), "int32")
            self._create_done(spec.name, "tokens", overwrite=True)
        elif tuple(arr.shape[1:]) != (num_crops, spec.num_tokens):
            raise StoreError(
                f"store {self.url}: {spec.name}/tokens has {arr.shape[1]} crops × {arr.shape[2]} tokens, but this run "
                f"asks for {num_crops} × {spec.num_tokens}; re-tokenize with --overwrite"
            )
        meta = self.modalities().get(spec.name, {})
        fields: dict[str, Any] = {"tokens": {"num_crops": int(num_crops), "num_tokens": int(spec.num_tokens),
                                             "vocab_size": spec.vocab_size, "tokenizer": tokenizer}}
        if "plugin" not in meta:
            fields.update(plugin=spec.plugin, version=spec.version, kind=spec.kind)
        self._set_modality_meta(spec.name, **fields)
        return arr

    def write_tokens(self, spec: ModalitySpec, start: int, tokens: np.ndarray, *, mark_done: bool = True) -> None:
        """Write token ids ``(n, crops, num_tokens)`` for samples ``start ..``."""
        self._require_writable(f"write tokens of {spec.name!r}")
        arr = self.array(spec.name, "tokens")
        tokens = np.asarray(tokens)
        if tokens.ndim != 3 or tokens.shape[1:] != tuple(arr.shape[1:]):
            raise StoreError(
                f"modality {spec.name!r}: tokens must have shape (n, {arr.shape[1]}, {arr.shape[2]}), got {tokens.shape}"
            )
        if tokens.size and (tokens.min() < 0 or (spec.vocab_size and tokens.max() >= spec.vocab_size)):
            raise StoreError(
                f"modality {spec.name!r}: token ids must be in [0, {spec.vocab_size}), got "
                f"{int(tokens.min())}..{int(tokens.max())}; is the tokenizer the one trained for this modality?"
            )
        arr[start:start + len(tokens)] = tokens.astype(np.int32)
        if mark_done:
            self._mark_covered(spec.name, "tokens", start, start + len(tokens))

    def read_tokens(self, name: str, indices: int | Iterable[int] | slice, crop: int | None = None, *,
                    check_complete: bool = True) -> np.ndarray:
        """Token ids: ``(n, crops, num_tokens)``, or ``(n, num_tokens)`` for one ``crop``."""
        idx = self._as_indices(indices, self.num_samples)
        self._check_range(idx, name)
        if check_complete and idx.size:
            self._check_complete(name, "tokens", idx)
        arr = self.array(name, "tokens")
        extra = () if crop is None else (int(crop),)
        return self._read(arr, idx, extra)


def roundtrip_raw(spec: ModalitySpec, raws: Sequence[Any], tmp_dir: str | os.PathLike[str], *,
                  raw_size: int = DEFAULT_RAW_SIZE) -> list[Any]:
    """Write ``raws`` of ``spec`` into a fresh store under ``tmp_dir`` and read them back (plugin testing kit)."""
    url = os.path.join(os.fspath(tmp_dir), f"roundtrip_{spec.name}.zarr")
    n = len(raws)
    store = Store.create(url, n, samples_per_shard=max(1, min(n, 2)), raw_size=raw_size, overwrite=True)
    store.write_raw(spec, 0, list(raws))
    return Store.open(url, "r").read_raw(spec.name, range(n))
