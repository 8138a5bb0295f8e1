"""webdataset tar shards, read with the standard library's ``tarfile`` (through fsspec for URLs).

A sample is the run of consecutive members sharing a key (the member path up to the first dot of its base
name); what follows the key is the member's extension. ``jpg`` / ``jpeg`` / ``png`` / ``webp``: the image (one
per sample); ``json``: a JSON object whose keys that name a modality (or an alias) are labels of that
modality; ``txt``: a label of ``txt_modality`` (default ``caption``); ``<modality>.<suffix>`` (``depth.png``,
``semseg.png``, ``det.json``): a label file of that modality. Other members are ignored (logged once).

Shards: a path or URL, a comma-separated list, or brace patterns ``shard-{000..009}.tar`` (ranges keep the
zero padding; ``{a,b}`` lists alternatives). The listing reads only the members' headers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import StoreError
from . import Sample, named_bytes, sha256_lines

log = logging.getLogger(__name__)
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
#: what names a tar shard (compressed ones are read too)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def expand_braces(pattern: str) -> list[str]:
    """All strings a brace pattern stands for, in order: ``{000..003}`` (numeric range, zero padding kept) and
    ``{a,b}`` (alternatives); several groups expand as a product."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[:m.start()], m.group(1), pattern[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.group(1), rng.group(2)
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        step = 1 if int(b) >= int(a) else -1
        parts = [str(i).zfill(width) for i in range(int(a), int(b) + step, step)]
    elif "," in body:
        parts = body.split(",")
    else:
        raise StoreError(f"shard pattern {pattern!r}: {{{body}}} is neither a range {{000..009}} nor a list {{a,b}}")
    return [s for p in parts for s in expand_braces(head + p + tail)]


def shard_urls(spec: str) -> list[str]:
    """The shard paths / URLs of a comma list of (brace) patterns (commas inside braces belong to them)."""
    items, depth, cur = [], 0, ""
    for ch in spec:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [u for item in items if item.strip() for u in expand_braces(item.strip())]


def _split_name(member: str) -> tuple[str, str]:
    """(key, extension) of a member path: ``dir/000123.depth.png`` → (``dir/000123``, ``depth.png``)."""
    head, base = os.path.split(member)
    stem, dot, ext = base.partition(".")
    return (os.path.join(head, stem) if head else stem), ext.lower() if dot else ""


class WebDatasetSource:
    """The samples of a list of tar shards (see the module docstring)."""

    base_dir = None

    def __init__(self, spec: str, *, txt_modality: str = "caption", storage_options: Mapping[str, Any] | None = None):
        self.urls = shard_urls(os.fspath(spec))
        if not self.urls:
            raise StoreError(f"webdataset source {spec!r} names no shard")
        self.txt_modality = txt_modality
        self.storage_options = dict(storage_options or {})
        self.description = f"webdataset {spec} ({len(self.urls)} shard(s))"
        self._keys: list[str] = []
        self._shard_of: list[int] = []  # first position of each shard, then the total
        self._ignored: set[str] = set()
        exts: dict[str, None] = {}
        json_keys: dict[str, None] = {}
        for s, url in enumerate(self.urls):
            self._shard_of.append(len(self._keys))
            prev = None
            for key, ext, member in self._members(url, headers_only=True):
                if key != prev:
                    self._keys.append(f"{os.path.basename(url)}/{key}")
                    prev = key
                exts[ext] = None
            if not json_keys and "json" in exts:
                json_keys.update(dict.fromkeys(self._first_json_keys(url)))
        self._shard_of.append(len(self._keys))
        if len(set(self._keys)) != len(self._keys):
            raise StoreError(f"{self.description}: a sample key appears in two runs of members (members of one sample "
                             f"must be consecutive, and keys unique per shard)")
        names: dict[str, None] = {}
        for ext in exts:
            if ext == "txt":
                names[txt_modality] = None
            elif "." in ext:
                names[ext.split(".")[0]] = None
        self._json_names = tuple(json_keys)
        self.label_names = tuple(names) + tuple(k for k in json_keys if k not in names)

    def restrict_json(self, names: set[str]) -> None:
        """Keep only the JSON keys that name installed modalities (the job calls this once it resolved them)."""
        self.label_names = tuple(n for n in self.label_names if n not in self._json_names or n in names)
        self._json_names = tuple(n for n in self._json_names if n in names)

    def _open(self, url: str) -> Any:
        if "://" in url:
            import fsspec

            try:
                return fsspec.open(url, "rb", **self.storage_options).open()
            except FileNotFoundError:
                raise StoreError(f"webdataset shard {url} does not exist") from None
        try:
            return open(url, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            raise StoreError(f"webdataset shard {url} does not exist") from None

    def _members(self, url: str, *, headers_only: bool) -> Iterator[tuple[str, str, Any]]:
        f = self._open(url)
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    key, ext = _split_name(m.name)
                    if os.path.basename(m.name).startswith("."):
                        continue
                    data = None if headers_only else tar.extractfile(m).read()
                    yield key, ext, (m.name, data)
        except tarfile.TarError as exc:
            raise StoreError(f"webdataset shard {url} is not a readable tar file ({exc})") from exc
        finally:
            f.close()

    def _first_json_keys(self, url: str) -> list[str]:
        for _, ext, (name, data) in self._members(url, headers_only=False):
            if ext == "json":
                try:
                    doc = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise StoreError(f"webdataset shard {url}: member {name} is not valid JSON ({exc})") from exc
                return list(doc) if isinstance(doc, dict) else []
        return []

    def keys(self) -> list[str]:
        return list(self._keys)

    def digest(self) -> str:
        return sha256_lines(self.urls + self._keys)

    def samples(self, positions: range) -> Iterator[Sample]:
        if not len(positions):
            return
        start, stop = positions.start, positions.stop
        for s, url in enumerate(self.urls):
            first, end = self._shard_of[s], self._shard_of[s + 1]
            if end <= start or first >= stop:
                continue
            pos = first - 1
            group: list[tuple[str, str, tuple[str, bytes]]] = []
            for item in self._members(url, headers_only=False):
                if group and item[0] != group[0][0]:
                    pos += 1
                    if start <= pos < stop:
                        yield self._sample(url, group)
                    if pos + 1 >= stop:
                        return
                    group = []
                group.append(item)
            if group:
                pos += 1
                if start <= pos < stop:
                    yield self._sample(url, group)

    def _sample(self, url: str, group: list[tuple[str, str, tuple[str, bytes]]]) -> Sample:
        key = group[0][0]
        where = f"sample {key} of shard {url}"
        image = None
        labels: dict[str, Any] = {}
        for _, ext, (name, data) in group:
            if ext in IMAGE_EXTS:
                if image is not None:
                    raise StoreError(f"{where} has two images ({image.name}, {name}); keep one image member")
                image = named_bytes(data, name)
            elif ext == "json":
                try:
                    doc = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise StoreError(f"{where}: member {name} is not valid JSON ({exc})") from exc
                if isinstance(doc, dict):
                    labels.update({k: doc[k] for k in self._json_names if k in doc})
            elif ext == "txt":
                labels[self.txt_modality] = named_bytes(data, name)
            elif "." in ext:
                labels[ext.split(".")[0]] = named_bytes(data, name)
            elif ext not in self._ignored:
                self._ignored.add(ext)
                log.info("ingest: ignoring webdataset members with extension %r (%s)", ext, name)
        if image is None:
            raise StoreError(f"{where} has no image member ({', '.join('.' + e for e in IMAGE_EXTS)})")
        return Sample(key=f"{os.path.basename(url)}/{key}", where=where, image=image, labels=labels)
