"""One zarr 3 store per dataset: the on-disk format of fourm (``docs/dataset-format.md``).

Layout (format version :data:`FORMAT_VERSION`)::

    store.zarr/                     root group; attrs: fourm_format_version, num_samples, samples_per_shard,
                                    raw_size, modalities {name: {plugin, version, kind, raw, tokens}}
      <mod>/raw                     (N, *shape) per the plugin's StorageSpec, or (N,) UTF-8 JSON strings
      <mod>/raw_done                (num_shards,) bool, one chunk per shard, set after the shard's data
      <mod>/raw_record              (num_shards, 2) uint64: digest and stored bytes of each done shard
      <mod>/tokens                  (N, crops, num_tokens) int32
      <mod>/tokens_done             (num_shards,) bool
      _crops/params                 (N, crops, 5) int32: top, left, height, width, flip (raw pixel coords)
      _crops/done                   (num_shards,) bool (and _crops/params_record)
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

The zarr layer (arrays, shards, completion records, checked reads) is
:class:`fourm_core.data.shards.ShardedArrays`, the base of :class:`Store`; validation of raw values against a
plugin's ``StorageSpec`` is :mod:`fourm_core.data.raw`; the error classes are in :mod:`fourm_core.data.errors`.

Writers must own whole shards: zarr 3 has no locks, and two processes writing inside one shard lose data.
The process that creates arrays and metadata (rank 0 in the jobs) must finish before others write. The jobs
hold the store's writer lock (:mod:`fourm_core.data.lock`) while they write.

``ensure_raw`` / ``ensure_tokens`` take the ``identity`` of what produces the values (labeler weights,
tokenizer: :mod:`fourm_core.data.identity`); it is stored in the array's attributes at creation, and an
existing array with done shards of another identity is refused (``--overwrite`` redoes it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from fourm_registry import ModalitySpec

from .errors import CorruptDataError, FormatVersionError, IncompleteDataError, StoreError
from .identity import mismatch_message
from .raw import DEFAULT_RAW_SIZE, decode_json, encode_raws, is_text_array, storage_of, storage_shape
from .shards import ShardedArrays, zarr_store

log = logging.getLogger(__name__)

#: Version of the on-disk layout written by this code. Readers refuse stores written by a newer version.
FORMAT_VERSION = 1
DEFAULT_SAMPLES_PER_SHARD = 64
#: Crop parameter columns of ``_crops/params``.
CROP_FIELDS = ("top", "left", "height", "width", "flip")

__all__ = [
    "CROP_FIELDS", "DEFAULT_RAW_SIZE", "DEFAULT_SAMPLES_PER_SHARD", "FORMAT_VERSION", "CorruptDataError",
    "FormatVersionError", "IncompleteDataError", "Store", "StoreError", "is_text_array", "roundtrip_raw",
    "storage_shape",
]


# --------------------------------------------------------------------------------------------------
class Store(ShardedArrays):
    """A fourm dataset store (see the module docstring for the layout)."""

    def __init__(self, group: zarr.Group, url: str, mode: str):
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
        super().__init__(group, url, mode, num_samples=int(attrs["num_samples"]),
                         samples_per_shard=int(attrs["samples_per_shard"]))
        self.format_version: int = version
        self.raw_size: int = int(attrs["raw_size"])

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def create(cls, url: str, num_samples: int, *, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
               raw_size: int = DEFAULT_RAW_SIZE, overwrite: bool = False,
               storage_options: Mapping[str, Any] | None = None,
               extra_attrs: Mapping[str, Any] | None = None) -> Store:
        """Create an empty store (no modality yet). ``overwrite`` deletes an existing one; ``extra_attrs`` are
        added to the root attributes (``ingest`` records its source there)."""
        url = os.fspath(url)
        for value, what in ((num_samples, "num_samples"), (samples_per_shard, "samples_per_shard"),
                            (raw_size, "raw_size")):
            if not isinstance(value, (int, np.integer)) or value < (0 if what == "num_samples" else 1):
                raise StoreError(f"store {url}: {what} must be a {'non-negative' if what == 'num_samples' else 'positive'} integer, got {value!r}")
        zstore = zarr_store(url, "w", storage_options)
        attributes = {
            "fourm_format_version": FORMAT_VERSION,
            "num_samples": int(num_samples),
            "samples_per_shard": int(samples_per_shard),
            "raw_size": int(raw_size),
            "modalities": {},
            **dict(extra_attrs or {}),
        }
        try:  # the attributes are written with the group's zarr.json: a kill cannot leave a group without them
            group = zarr.open_group(zstore, mode="w" if overwrite else "w-", zarr_format=3, attributes=attributes)
        except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError) as exc:
            raise StoreError(f"store {url} already exists; pass overwrite=True (--overwrite) to replace it") from exc
        return cls(group, url, "r+")

    @classmethod
    def open(cls, url: str, mode: str = "r", *, storage_options: Mapping[str, Any] | None = None) -> Store:
        """Open an existing store; ``mode`` is ``"r"`` (read) or ``"r+"`` (read and write)."""
        url = os.fspath(url)
        if mode not in ("r", "r+"):
            raise StoreError(f"store {url}: mode must be 'r' or 'r+', got {mode!r} (use Store.create to make one)")
        zstore = zarr_store(url, mode, storage_options)
        try:
            group = zarr.open_group(zstore, mode=mode, zarr_format=3, use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
            raise StoreError(f"no fourm dataset store at {url}; create one with `fourm ingest SRC {url}`") from exc
        return cls(group, url, mode)

    def __repr__(self) -> str:
        return f"Store({self.url!r}, num_samples={self.num_samples}, modalities={sorted(self.modalities())})"

    # -- raw ------------------------------------------------------------------------------------------
    def ensure_raw(self, spec: ModalitySpec, *, overwrite: bool = False,
                   identity: Mapping[str, Any] | None = None) -> zarr.Array:
        """Create ``<spec.name>/raw`` (and its completion records) if needed; check it matches ``spec`` and,
        when given, the ``identity`` of the labeler that writes it.

        ``overwrite`` deletes existing raw data and its completion records first.
        """
        self._require_writable(f"write modality {spec.name!r}")
        storage = storage_of(spec)
        shape = storage_shape(spec, self.raw_size)
        path = self._path(spec.name, "raw")
        if overwrite:
            self._delete_tracked(path)
        arr = self._array(path, missing_ok=True)
        attrs = {"identity": dict(identity)} if identity else None
        if arr is None:
            if storage.is_json:
                arr = self._create_tracked(path, (self.num_samples,), str, level=storage.compression_level,
                                           attributes=attrs)
            else:
                fill = storage.fill_value if storage.fill_value is not None else 0
                arr = self._create_tracked(path, (self.num_samples, *shape), storage.dtype,
                                           level=storage.compression_level, fill_value=fill, attributes=attrs)
        else:
            self._check_raw_array(spec, arr, shape)
            self._ensure_done_for(path)
            self._check_identity(spec.name, "raw", arr, identity)
        self._set_modality_meta(spec.name, plugin=spec.plugin, version=spec.version, kind=spec.kind,
                                raw={"dtype": storage.dtype, "shape": list(shape)})
        return arr

    def _check_identity(self, name: str, what: str, arr: zarr.Array, identity: Mapping[str, Any] | None) -> None:
        """Refuse to resume an array whose done shards were written by something else than ``identity``."""
        if not identity:
            return
        have = arr.attrs.get("identity")
        if have is not None and have.get("sha256") == identity.get("sha256"):
            return
        any_done = bool(self.done(name, what).any())
        if have is not None and any_done:
            raise StoreError(mismatch_message(self.url, f"{name}/{what}", have, identity))
        if have is None and any_done:
            log.warning("store %s: %s/%s records no identity (written by an older fourm); recording this run's",
                        self.url, name, what)
        arr.attrs["identity"] = dict(identity)

    def _check_raw_array(self, spec: ModalitySpec, arr: zarr.Array, shape: tuple[int, ...]) -> None:
        storage = storage_of(spec)
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
        block = encode_raws(spec, storage_shape(spec, self.raw_size), start, raws)
        self._clear_covered(arr, start, start + n)
        arr[start:start + n] = block
        if mark_done:
            self._mark_covered(spec.name, "raw", start, start + n)

    def read_raw(self, name: str, indices: int | Iterable[int] | slice, *, check_complete: bool = True) -> list[Any]:
        """Raw samples of modality ``name`` (numpy arrays, or JSON values), in the order of ``indices``.

        With ``check_complete`` (default), reading from a shard no job has finished raises
        :class:`IncompleteDataError`.
        """
        idx = self._checked_indices(name, "raw", indices, check_complete)
        arr = self.array(name, "raw")
        data = self._read(arr, idx)
        if is_text_array(arr):
            return decode_json(f"store {self.url}: {name}/raw", idx.tolist(), data.tolist(),
                               check_complete=check_complete)
        return list(data)

    def read_raw_array(self, name: str, indices: int | Iterable[int] | slice, *,
                       check_complete: bool = True) -> np.ndarray:
        """Like :meth:`read_raw` for fixed-shape modalities, as one stacked array ``(n, *shape)``."""
        idx = self._checked_indices(name, "raw", indices, check_complete)
        return self._read(self.array(name, "raw"), idx)

    # -- crops ----------------------------------------------------------------------------------------
    def ensure_crops(self, num_crops: int, *, seed: int, overwrite: bool = False) -> zarr.Array:
        """Create ``_crops/params`` (N, num_crops, 5) if needed; an existing one must match crops and seed."""
        self._require_writable("write crop parameters")
        if overwrite:
            self._delete_tracked("_crops/params")
        arr = self._array("_crops/params", missing_ok=True)
        if arr is None:
            # the attributes are part of the array's creation: a kill cannot leave crops without their seed
            arr = self._create_tracked(
                "_crops/params", (self.num_samples, num_crops, len(CROP_FIELDS)), "int32",
                attributes={"fields": list(CROP_FIELDS), "seed": int(seed), "num_crops": int(num_crops)})
        elif arr.attrs.get("seed") is None and not self.crops_done().any():
            # created by an older fourm that wrote the attributes after the array, and killed in between
            log.warning("store %s: _crops/params has no seed and no finished shard; drawing it again", self.url)
            return self.ensure_crops(num_crops, seed=seed, overwrite=True)
        else:
            self._ensure_done_for("_crops/params")
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
            if "tokens" in sub or "tokens_done" in sub:
                self._delete_tracked(f"{gname}/tokens")
                dropped.append(gname)
        if dropped:
            self._update_modalities(lambda mods: [mods[g].pop("tokens", None) for g in dropped if g in mods])
        self._delete_tracked("_crops/params")
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
        self._clear_covered(arr, start, start + len(params))
        arr[start:start + len(params)] = params
        if mark_done:
            for s in self._covered_shards(start, start + len(params)):
                self._finish("_crops/params", s)

    def read_crops(self, indices: int | Iterable[int] | slice) -> np.ndarray:
        """Crop parameters ``(n, crops, 5)`` int32 (top, left, height, width, flip)."""
        idx = self._as_indices(indices, self.num_samples)
        self._check_range(idx, "_crops")
        return self._read(self._array("_crops/params"), idx)

    # -- tokens ---------------------------------------------------------------------------------------
    def ensure_tokens(self, spec: ModalitySpec, num_crops: int, *, overwrite: bool = False,
                      tokenizer: str | None = None, identity: Mapping[str, Any] | None = None) -> zarr.Array:
        """Create ``<spec.name>/tokens`` (N, num_crops, num_tokens) int32 if needed; check an existing one
        (shape, and the ``identity`` of the tokenizer that wrote its done shards)."""
        self._require_writable(f"write tokens of {spec.name!r}")
        if not spec.num_tokens:
            raise StoreError(f"modality {spec.name!r} has no num_tokens; it cannot be tokenized")
        path = self._path(spec.name, "tokens")
        if overwrite:
            self._delete_tracked(path)
        arr = self._array(path, missing_ok=True)
        if arr is None:
            arr = self._create_tracked(path, (self.num_samples, num_crops, spec.num_tokens), "int32",
                                       attributes={"identity": dict(identity)} if identity else None)
        elif tuple(arr.shape[1:]) != (num_crops, spec.num_tokens):
            raise StoreError(
                f"store {self.url}: {spec.name}/tokens has {arr.shape[1]} crops × {arr.shape[2]} tokens, but this run "
                f"asks for {num_crops} × {spec.num_tokens}; re-tokenize with --overwrite"
            )
        else:
            self._ensure_done_for(path)
            self._check_identity(spec.name, "tokens", arr, identity)
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
        self._clear_covered(arr, start, start + len(tokens))
        arr[start:start + len(tokens)] = tokens.astype(np.int32)
        if mark_done:
            self._mark_covered(spec.name, "tokens", start, start + len(tokens))

    def read_tokens(self, name: str, indices: int | Iterable[int] | slice, crop: int | None = None, *,
                    check_complete: bool = True) -> np.ndarray:
        """Token ids: ``(n, crops, num_tokens)``, or ``(n, num_tokens)`` for one ``crop``."""
        idx = self._checked_indices(name, "tokens", indices, check_complete)
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
