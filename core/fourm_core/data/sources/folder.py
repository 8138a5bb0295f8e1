"""A folder of images, recursively, optionally with label folders matched by file stem (``--labels depth=DIR``:
``photos/a/x.jpg`` ↔ ``DIR/a/x.png``, any suffix) or a COCO-style JSON file matched by file name
(``--labels det=instances.json``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import Sample, sha256_lines

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def find_images(src: str | os.PathLike[str]) -> list[str]:
    """Image files (jpg/jpeg/png/webp, any case) under ``src``, recursively, sorted by relative path."""
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise StoreError(f"ingest source {src!r} is not a directory of images")
    found = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                found.append(os.path.relpath(os.path.join(root, f), src))
    return sorted(found)


def _index_by_stem(name: str, folder: str) -> dict[str, str]:
    """Relative path without suffix → relative path of the files under a label folder."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            if f.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(root, f), folder)
            stem = os.path.splitext(rel)[0]
            if stem in out:
                raise StoreError(f"--labels {name}={folder}: {out[stem]!r} and {rel!r} have the same stem; keep one "
                                 f"label file per image")
            out[stem] = rel
    return out


class FolderSource:
    """Images under ``root`` (see :func:`find_images`) and their label folders / COCO files."""

    base_dir = None

    def __init__(self, root: str, *, labels: Mapping[str, str] | None = None):
        self.root = os.fspath(root)
        self.files = find_images(self.root)
        if not self.files:
            raise StoreError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root!r}")
        self.labels: dict[str, str] = {}
        self._stems: dict[str, dict[str, str] | None] = {}
        listing: list[str] = []
        for name, path in (labels or {}).items():
            path = os.fspath(path)
            if os.path.isdir(path):
                self._stems[name] = _index_by_stem(name, path)
                listing += [f"{name}:{v}" for v in sorted(self._stems[name].values())]
            elif os.path.isfile(path) and path.lower().endswith(".json"):
                self._stems[name] = None
                st = os.stat(path)
                listing.append(f"{name}:{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}")
            else:
                raise StoreError(f"--labels {name}={path}: not a folder of label files nor a COCO-style .json file")
            self.labels[name] = path
        self.label_names = tuple(self.labels)
        self.description = f"folder {self.root}" + "".join(f", {n} labels from {p}" for n, p in self.labels.items())
        self._listing = listing

    def keys(self) -> list[str]:
        return list(self.files)

    def digest(self) -> str:
        return sha256_lines(self.files + self._listing)

    def samples(self, positions: range) -> Iterator[Sample]:
        for i in positions:
            rel = self.files[i]
            labels: dict[str, Any] = {}
            for name, path in self.labels.items():
                stems = self._stems[name]
                if stems is None:
                    labels[name] = {"file": os.path.abspath(path), "file_name": rel.replace(os.sep, "/")}
                else:
                    found = stems.get(os.path.splitext(rel)[0])
                    labels[name] = None if found is None else Path(path, found)
            yield Sample(key=rel, where=f"image {os.path.join(self.root, rel)}", image=os.path.join(self.root, rel),
                         labels=labels)
