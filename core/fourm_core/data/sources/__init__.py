"""Where ``fourm ingest`` reads samples from: a folder of images (with per-modality label folders), a manifest
(CSV / JSON lines), webdataset tar shards, a Hugging Face ``datasets`` dataset.

Every source lists its samples up front (:meth:`Source.keys`: one unique key per sample, in a fixed order,
cheap: file names, manifest rows, tar member names, row numbers) and then yields them for any range of
positions (:meth:`Source.samples`), so that the ingest job can resume after the last finished shard and
split the shards over processes. A :class:`Sample` carries its image (a path or a binary file object) and,
per label modality, what the source gives for it: a file (:class:`pathlib.Path` or a named binary file
object) or a JSON value; :func:`resolve_label` turns a manifest cell into one of those.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from ..errors import StoreError


class LabelError(StoreError):
    """A sample's label is missing, unreadable or does not fit its modality; the message names the sample (row,
    file, tar member), the modality and the fix."""


@attrs.frozen(kw_only=True)
class Sample:
    """One sample of a source: ``key`` (unique, stored in ``_samples/source``), ``where`` (how errors name it:
    ``row 3 of manifest.csv``), ``image`` (a path or a binary file object) and ``labels`` (modality name as the
    source spells it → a :class:`~pathlib.Path`, a named binary file object, or a JSON value)."""

    key: str
    where: str
    image: Any
    labels: Mapping[str, Any] = attrs.field(factory=dict)


class Source(Protocol):
    """What the ingest job reads from (see the module docstring)."""

    #: one line naming the source in logs and errors
    description: str
    #: the label modalities the source has, spelled as in the source (names or aliases)
    label_names: tuple[str, ...]
    #: the folder relative label paths of the source are relative to (None: they are absolute)
    base_dir: str | None

    def keys(self) -> list[str]: ...

    def digest(self) -> str: ...

    def samples(self, positions: range) -> Iterator[Sample]: ...


def named_bytes(data: bytes, name: str) -> io.BytesIO:
    """A binary file object over ``data`` whose ``name`` (and so suffix) is ``name``."""
    f = io.BytesIO(data)
    f.name = name
    return f


def sha256_lines(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def parse_cell(text: str) -> Any:
    """A CSV cell: ``""`` is None (no label), text starting with ``{`` or ``[`` is parsed as JSON, anything
    else is the string itself."""
    text = text.strip()
    if not text:
        return None
    if text[0] in "{[":
        return json.loads(text)
    return text


def resolve_label(value: Any, suffixes: Sequence[str], base_dir: str | None) -> Any:
    """What a reader gets for a source value: a string ending with one of the reader's file ``suffixes`` is a
    path (relative to ``base_dir``); a dict's ``"file"`` (a COCO reference) is made relative to ``base_dir``
    too; files and other JSON values pass unchanged."""
    if isinstance(value, os.PathLike) or hasattr(value, "read"):
        return value
    if isinstance(value, str) and suffixes and value.lower().endswith(tuple(s.lower() for s in suffixes)):
        return Path(base_dir, value) if base_dir else Path(value)
    if isinstance(value, Mapping) and isinstance(value.get("file"), str) and base_dir:
        return {**value, "file": os.path.join(base_dir, value["file"])}
    return value


def open_source(src: str | os.PathLike[str] | None = None, *, labels: Mapping[str, str] | None = None,
                hf: str | None = None, split: str = "train", image_column: str = "image",
                columns: Mapping[str, str] | None = None, txt_modality: str = "caption",
                storage_options: Mapping[str, Any] | None = None) -> Source:
    """The source ``src`` names: a folder of images (``labels``: modality → folder matched by file stem, or a
    COCO-style JSON file), a ``.csv`` / ``.jsonl`` manifest, webdataset ``.tar`` shards (a path, a brace
    pattern ``shard-{000..009}.tar``, a comma list or an fsspec URL), or with ``hf`` a ``datasets`` dataset."""
    if hf is not None:
        if src is not None:
            raise StoreError("pass either SRC or --hf, not both")
        from .hf import HFSource

        return HFSource(hf, split=split, image_column=image_column, columns=dict(columns or {}))
    if src is None:
        raise StoreError("no source given: pass a folder of images, a manifest (.csv / .jsonl), tar shards, or --hf")
    if columns:
        raise StoreError("--column maps the columns of a --hf dataset; a manifest names modalities by its columns")
    src = os.fspath(src)
    lower = src.lower()
    from .webdataset import TAR_SUFFIXES, shard_urls

    if (".tar" in lower or ".tgz" in lower) and any(u.lower().endswith(TAR_SUFFIXES) for u in shard_urls(src)):
        from .webdataset import WebDatasetSource

        _no_labels(labels, "webdataset shards (their members carry the labels)")
        return WebDatasetSource(src, txt_modality=txt_modality, storage_options=storage_options)
    if lower.endswith((".csv", ".jsonl", ".ndjson")):
        from .manifest import ManifestSource

        _no_labels(labels, "a manifest (its columns name the label files)")
        return ManifestSource(src)
    from .folder import FolderSource

    return FolderSource(src, labels=dict(labels or {}))


def _no_labels(labels: Mapping[str, str] | None, what: str) -> None:
    if labels:
        raise StoreError(f"--labels matches label folders to a folder of images; it does not apply to {what}")


__all__ = ["LabelError", "Sample", "Source", "named_bytes", "open_source", "parse_cell", "resolve_label",
           "sha256_lines"]
