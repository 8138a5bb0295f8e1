"""Reader of real semantic segmentation labels: a class-index map → the ``semseg`` raw (uint8 (H, W, 1)).

Files: 8- or 16-bit single-channel PNG / TIFF or ``.npy`` of integer class ids (a 3-channel PNG must hold equal
channels: a colour-coded map needs converting to ids first). ``class_map`` (a ``{file id: class id}`` dict,
or the path of a JSON file holding one) maps the file's ids onto the modality's classes; ids it does not
list are an error unless ``unmapped="ignore"`` makes them ignored. ``ignore`` ids of the file (default 255)
become the modality's ignore index 255. Any id beyond the ``num_classes`` classes (default COCO panoptic's
133) is an error naming the ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fourm_core.plugin_kit.readers import LabelReadError, check_size, is_file_source, read_array, source_name

IGNORE_INDEX = 255


def _load_class_map(class_map: Mapping[Any, Any] | str | os.PathLike[str] | None) -> dict[int, int] | None:
    if class_map is None:
        return None
    if not isinstance(class_map, Mapping):
        try:
            class_map = json.loads(Path(class_map).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"semseg reader: class_map {os.fspath(class_map)!r} is not a readable JSON file "
                             f"{{file id: class id}} ({exc})") from exc
    try:
        return {int(k): int(v) for k, v in class_map.items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"semseg reader: class_map must map integer file ids to integer class ids ({exc})") from exc


class SemsegReader:
    """``read(path, image_size=(H, W))`` → uint8 (H, W, 1) class ids (see the module docstring)."""

    suffixes = (".png", ".tif", ".tiff", ".npy")

    def __init__(self, *, spec: Any = None, num_classes: int | None = None,
                 class_map: Mapping[Any, Any] | str | None = None, ignore: tuple[int, ...] | int = (IGNORE_INDEX,),
                 unmapped: str = "error"):
        from .components import NUM_CLASSES

        self.spec = spec
        self.num_classes = int(num_classes if num_classes is not None else NUM_CLASSES)
        if not 0 < self.num_classes <= IGNORE_INDEX:
            raise ValueError(f"semseg reader: num_classes must be in 1..{IGNORE_INDEX}, got {self.num_classes}")
        if unmapped not in ("error", "ignore"):
            raise ValueError(f"semseg reader: unmapped must be 'error' or 'ignore', got {unmapped!r}")
        self.class_map = _load_class_map(class_map)
        self.ignore = (int(ignore),) if isinstance(ignore, (int, np.integer)) else tuple(int(i) for i in ignore)
        self.unmapped = unmapped
        self._lut: np.ndarray | None = None
        if self.class_map is not None:
            bad = sorted(v for v in self.class_map.values() if not (0 <= v < self.num_classes or v == IGNORE_INDEX))
            if bad:
                raise ValueError(f"semseg reader: class_map targets {bad} are beyond the {self.num_classes} classes "
                                 f"(0..{self.num_classes - 1}, {IGNORE_INDEX} = ignore)")

    def read(self, source: Any, *, image_size: tuple[int, int]) -> np.ndarray:
        if not is_file_source(source):
            raise LabelReadError(f"semseg labels are class-index files ({', '.join(self.suffixes)}), got the "
                                 f"value {source!r:.80}")
        name = source_name(source)
        arr = check_size(read_array(source), image_size, name)
        if arr.shape[2] != 1:
            if arr.shape[2] in (3, 4) and (arr[..., :3] == arr[..., :1]).all():
                arr = arr[..., :1]
            else:
                raise LabelReadError(f"semseg file {name} has {arr.shape[2]} different channels; a class map has one "
                                     f"channel of class ids (convert a colour-coded map to ids first)")
        if arr.dtype.kind not in "ui" and not (arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr))):
            raise LabelReadError(f"semseg file {name} holds {arr.dtype} values; class ids must be integers")
        ids = arr[..., 0].astype(np.int64)
        if ids.size and ids.min() < 0:
            raise LabelReadError(f"semseg file {name} has negative class ids (lowest {int(ids.min())})")
        return self._map(ids, name)[..., None]

    def _map(self, ids: np.ndarray, name: str) -> np.ndarray:
        present = np.unique(ids)
        ignored = np.isin(present, self.ignore)
        if self.class_map is None:
            unknown = present[~ignored & (present >= self.num_classes)]
            if unknown.size:
                raise LabelReadError(
                    f"semseg file {name} has class ids {unknown[:10].tolist()} beyond the {self.num_classes} classes "
                    f"of modality 'semseg' (0..{self.num_classes - 1}, {IGNORE_INDEX} = ignore); pass a class map "
                    f"(reader option class_map=FILE.json) that maps them")
            out = ids.copy()
            out[np.isin(ids, self.ignore)] = IGNORE_INDEX
            return out.astype(np.uint8)
        size = int(max(present.max(), max(self.class_map))) + 1
        fill = IGNORE_INDEX if self.unmapped == "ignore" else -1
        lut = np.full(size, fill, np.int64)
        lut[list(self.class_map)] = list(self.class_map.values())
        lut[[i for i in self.ignore if i < size]] = IGNORE_INDEX
        out = lut[ids]
        if (out < 0).any():
            unknown = np.unique(ids[out < 0])
            raise LabelReadError(f"semseg file {name} has class ids {unknown[:10].tolist()} that the class map does "
                                 f"not list; add them to it, or pass unmapped='ignore'")
        return out.astype(np.uint8)
