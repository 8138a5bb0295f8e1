"""A Hugging Face ``datasets`` dataset: by hub name, or by local path (a folder written by ``save_to_disk``, or
data files ``load_dataset`` reads), one split.

A dataset saved with ``save_to_disk`` is memory-mapped (random access); any other is opened with
``streaming=True`` and read in order (``skip`` to resume or to start a process's shards). The image column
(``image_column``) is read undecoded (its bytes, or its path); ``columns`` maps modalities to columns: an
image-typed column gives its bytes as a label file, any other its value (a caption string, a JSON object).
Offline use (``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) reads only local paths and the cache; a dataset
that is in neither is a clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import StoreError
from . import Sample, named_bytes


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise StoreError("ingest --hf needs the `datasets` package: pip install 'fourm-core[hf]'") from exc
    return datasets


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


class HFSource:
    """One split of a ``datasets`` dataset (see the module docstring)."""

    base_dir = None

    def __init__(self, name: str, *, split: str = "train", image_column: str = "image",
                 columns: Mapping[str, str] | None = None):
        datasets = _import_datasets()
        self.name, self.split, self.image_column = name, split, image_column
        self.columns = dict(columns or {})
        self.description = f"datasets {name} (split {split})"
        self.ds = self._load(datasets)
        features = self.ds.features or {}
        for col in (image_column, *self.columns.values()):
            if features and col not in features:
                raise StoreError(f"{self.description} has no column {col!r}; its columns are {sorted(features)} "
                                 f"(--image-column / --column MODALITY=COLUMN)")
        self._image_cols = {c for c, f in features.items() if isinstance(f, datasets.Image)}
        self.ds = self.ds.select_columns([image_column, *dict.fromkeys(self.columns.values())])
        for c in self._image_cols & set(self.ds.features or {}):
            self.ds = self.ds.cast_column(c, datasets.Image(decode=False))
        self.label_names = tuple(self.columns)
        self.num_rows = self._count()

    def _load(self, datasets: Any) -> Any:
        path = self.name
        saved = os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f)) for f in
                                            ("dataset_info.json", "state.json", "dataset_dict.json"))
        try:
            if saved:
                ds = datasets.load_from_disk(path)
                if isinstance(ds, datasets.DatasetDict):
                    if self.split not in ds:
                        raise StoreError(f"{self.description}: no split {self.split!r}; it has {sorted(ds)} (--split)")
                    ds = ds[self.split]
                self.streaming = False
                return ds
            self.streaming = True
            return datasets.load_dataset(path, split=self.split, streaming=True)
        except StoreError:
            raise
        except (FileNotFoundError, ConnectionError, ValueError, OSError) as exc:
            hint = ("HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set, so only local paths and the cache are read; "
                    "download it once online or pass a local path" if _offline() else
                    "check the name / path, the split (--split) and the network")
            raise StoreError(f"cannot open {self.description}: {type(exc).__name__}: {exc}. {hint}") from exc

    def _count(self) -> int:
        if not self.streaming:
            return len(self.ds)
        info = getattr(self.ds, "info", None)
        splits = getattr(info, "splits", None) or {}
        if self.split in splits and splits[self.split].num_examples:
            return int(splits[self.split].num_examples)
        return sum(1 for _ in self.ds)  # no recorded size: one pass over the (undecoded) rows

    def keys(self) -> list[str]:
        return [f"{self.split}/{i}" for i in range(self.num_rows)]

    def digest(self) -> str:
        fp = getattr(self.ds, "_fingerprint", None)
        what = {"name": os.path.abspath(self.name) if os.path.exists(self.name) else self.name, "split": self.split,
                "rows": self.num_rows, "image": self.image_column, "columns": self.columns, "fingerprint": fp}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()

    def _rows(self, positions: range) -> Iterator[dict[str, Any]]:
        if not self.streaming:
            yield from self.ds.select(positions)
            return
        yield from self.ds.skip(positions.start).take(len(positions))

    def _file(self, value: Any, col: str, where: str) -> Any:
        if isinstance(value, Mapping) and ("bytes" in value or "path" in value):
            if value.get("bytes") is not None:
                return named_bytes(value["bytes"], os.path.basename(value.get("path") or f"{col}.png"))
            if value.get("path"):
                return value["path"]
        if isinstance(value, str):
            return value
        raise StoreError(f"{where}: column {col!r} holds no image (neither bytes nor a path)")

    def samples(self, positions: range) -> Iterator[Sample]:
        for i, row in zip(positions, self._rows(positions)):
            where = f"row {i} of {self.description}"
            image = self._file(row[self.image_column], self.image_column, where)
            labels = {}
            for mod, col in self.columns.items():
                v = row[col]
                labels[mod] = self._file(v, col, where) if col in self._image_cols else v
            yield Sample(key=f"{self.split}/{i}", where=where, image=image, labels=labels)
