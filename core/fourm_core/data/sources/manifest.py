"""A manifest: one row per sample, CSV (a header row) or JSON lines (one object per line).

Column ``image``: the image's path, relative to the manifest's folder. Every other column names a modality
(its name or an alias) and holds, per row, a label file path (relative to the manifest's folder) or a JSON
value: a caption string, or a COCO reference ``{"file": "instances.json", "image_id": 139}`` (its ``file``
relative to the manifest's folder too). In CSV a cell starting with ``{`` or ``[`` is parsed as JSON; an
empty cell means the row has no label of that modality, which the ingest job refuses (every sample needs
every modality the manifest has).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import Sample, parse_cell

IMAGE_COLUMN = "image"


class ManifestSource:
    """The rows of a ``.csv`` / ``.jsonl`` manifest (see the module docstring)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(os.fspath(path))
        self.base_dir = os.path.dirname(self.path)
        try:
            data = Path(self.path).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"manifest {self.path} does not exist") from None
        self._digest = hashlib.sha256(data).hexdigest()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise StoreError(f"manifest {self.path} is not UTF-8 text ({exc})") from exc
        self.rows = self._parse(text)
        if not self.rows:
            raise StoreError(f"manifest {self.path} has no rows")
        names: dict[str, None] = {}
        for _, row in self.rows:
            names.update(dict.fromkeys(k for k in row if k != IMAGE_COLUMN))
        self.label_names = tuple(names)
        seen: dict[str, int] = {}
        for line, row in self.rows:
            image = row.get(IMAGE_COLUMN)
            if not isinstance(image, str) or not image.strip():
                raise StoreError(f"manifest {self.path}, row {line}: no {IMAGE_COLUMN!r} path; every row names its "
                                 f"image (relative to the manifest's folder)")
            if image in seen:
                raise StoreError(f"manifest {self.path}: image {image!r} is listed twice (rows {seen[image]} and "
                                 f"{line}); keep one row per image")
            seen[image] = line
        self.description = f"manifest {self.path}"

    def _parse(self, text: str) -> list[tuple[int, dict[str, Any]]]:
        """``[(row number as the user counts it, {column: value})]``."""
        if self.path.lower().endswith(".csv"):
            reader = csv.DictReader(text.splitlines())
            if not reader.fieldnames or IMAGE_COLUMN not in reader.fieldnames:
                raise StoreError(f"manifest {self.path} has no {IMAGE_COLUMN!r} column (header: {reader.fieldnames}); "
                                 f"the first line names the columns: image,depth,semseg,...")
            rows = []
            for n, row in enumerate(reader, start=2):
                if None in row:
                    raise StoreError(f"manifest {self.path}, line {n}: more cells than header columns (quote cells "
                                     f"that hold commas)")
                try:
                    rows.append((n, {k: parse_cell(v or "") for k, v in row.items()}))
                except json.JSONDecodeError as exc:
                    raise StoreError(f"manifest {self.path}, line {n}: a cell starting with {{ or [ is not valid JSON "
                                     f"({exc})") from exc
            return rows
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StoreError(f"manifest {self.path}, line {n} is not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise StoreError(f"manifest {self.path}, line {n}: each line must be a JSON object "
                                 f'{{"image": ..., "depth": ...}}')
            rows.append((n, row))
        return rows

    def keys(self) -> list[str]:
        return [row[IMAGE_COLUMN] for _, row in self.rows]

    def digest(self) -> str:
        return self._digest

    def samples(self, positions: range) -> Iterator[Sample]:
        name = os.path.basename(self.path)
        for i in positions:
            line, row = self.rows[i]
            image = row[IMAGE_COLUMN]
            yield Sample(key=image, where=f"row {line} of {name} (image {image})",
                         image=os.path.join(self.base_dir, image),
                         labels={k: v for k, v in row.items() if k != IMAGE_COLUMN})
