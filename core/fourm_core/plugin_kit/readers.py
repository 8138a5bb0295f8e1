"""Reading real labels: the helpers behind the plugins' ``reader`` components.

A reader gets one *source* per sample and returns the label in its modality's raw form, at the size of the
sample's original image (``image_size = (H, W)``); the ingest job then applies the rgb image's resize and
centre crop through the modality's transform. A source is one of

* a label file: a :class:`pathlib.Path`, or a binary file object with a ``name`` (a member of a tar shard,
  the bytes of a ``datasets`` column) whose suffix tells its format;
* a JSON value: a caption string, a raw in the modality's own form, or a reference into a COCO-style file,
  ``{"file": PATH, "image_id": ID}`` or ``{"file": PATH, "file_name": NAME}``.

Everything here raises :class:`LabelReadError` (a ``ValueError``) with a message that names what is wrong and
the fix; the ingest job adds the sample (manifest row, tar member) and the modality.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import numpy as np

#: suffixes :func:`read_array` decodes
ARRAY_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".exr", ".jpg", ".jpeg", ".webp")


class LabelReadError(ValueError):
    """A label file or value cannot be read, or does not fit the modality; the message says the fix."""


def is_file_source(source: Any) -> bool:
    """Whether ``source`` is a label file (a path or a binary file object) rather than a JSON value."""
    return isinstance(source, os.PathLike) or hasattr(source, "read")


def source_name(source: Any) -> str:
    """The file name of a file source (for suffixes and messages)."""
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", "<bytes>"))


def suffix_of(source: Any) -> str:
    """Lower-case last suffix of a file source's name (``x.depth.png`` → ``.png``)."""
    return Path(source_name(source)).suffix.lower()


def read_bytes(source: Path | BinaryIO) -> bytes:
    """All bytes of a file source; a missing or unreadable file raises :class:`LabelReadError`."""
    if isinstance(source, os.PathLike):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise LabelReadError(f"label file {os.fspath(source)} does not exist; fix the path or add the file") from None
        except OSError as exc:
            raise LabelReadError(f"label file {os.fspath(source)} cannot be read ({exc})") from exc
    if hasattr(source, "seek"):
        source.seek(0)
    return source.read()


def read_array(source: Path | BinaryIO) -> np.ndarray:
    """Decode a label file into a channels-last array ``(H, W, C)``, keeping its bit depth.

    PNG / TIFF / JPEG / WebP (8- or 16-bit, grey or colour; colour channels in RGB order) and EXR (float) are
    decoded by OpenCV; ``.npy`` by numpy (``(H, W)`` or ``(H, W, C)``, no pickles). EXR needs an OpenCV
    build with OpenEXR: the environment variable ``OPENCV_IO_ENABLE_OPENEXR=1`` is set for it here.
    """
    suffix = suffix_of(source)
    name = source_name(source)
    if suffix not in ARRAY_SUFFIXES:
        raise LabelReadError(f"label file {name}: suffix {suffix or '(none)'!r} is not one of "
                             f"{', '.join(ARRAY_SUFFIXES)}; convert it to 16-bit PNG or .npy")
    data = read_bytes(source)
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise LabelReadError(f"label file {name} is not a readable .npy array ({exc})") from exc
    else:
        arr = _decode_image(data, name, exr=suffix == ".exr")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise LabelReadError(f"label file {name} holds an array of shape {arr.shape}; a label map must be "
                             f"(H, W) or (H, W, C)")
    return arr


def _decode_image(data: bytes, name: str, *, exr: bool) -> np.ndarray:
    if exr:
        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        import cv2
    except ImportError as exc:
        raise LabelReadError(f"label file {name}: reading it needs OpenCV (pip install opencv-python-headless)") from exc
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        arr = None
        if exr:
            raise LabelReadError(f"label file {name}: this OpenCV cannot decode EXR ({exc.msg.strip()}); install an "
                                 f"OpenCV built with OpenEXR, or convert the file to .npy") from exc
    if arr is None:
        raise LabelReadError(f"label file {name} is not a readable image (empty, truncated or another format)")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):  # OpenCV decodes colour as BGR(A)
        arr = arr[..., [2, 1, 0, 3][:arr.shape[2]]]
    return np.ascontiguousarray(arr)


def check_size(arr: np.ndarray, image_size: tuple[int, int], name: str) -> np.ndarray:
    """``arr`` when its height and width equal the image's; else a :class:`LabelReadError` with both sizes."""
    if tuple(arr.shape[:2]) != tuple(image_size):
        h, w = image_size
        raise LabelReadError(f"label file {name} is {arr.shape[1]}x{arr.shape[0]} pixels (W x H) but its image is "
                             f"{w}x{h}; a label map must have its image's size (resize it with nearest "
                             f"interpolation for class maps)")
    return arr


def fill_invalid_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``values`` (H, W) with every invalid pixel set to the value of its nearest valid pixel (so that a later
    bilinear resize never blends the invalid marker into valid depth). Needs at least one valid pixel."""
    import cv2

    if valid.all():
        return values
    # distance to the nearest zero pixel (the valid ones), labelled with that pixel
    zeros_at_valid = np.where(valid, 0, 255).astype(np.uint8)
    _, nearest = cv2.distanceTransformWithLabels(zeros_at_valid, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(nearest.max()) + 1, dtype=values.dtype)
    lut[nearest[valid]] = values[valid]
    return lut[nearest]


# -- JSON references ------------------------------------------------------------------------------------
def load_json_value(source: Any) -> Any:
    """A JSON value as given, or the parsed content of a ``.json`` file source."""
    if not is_file_source(source):
        return source
    name = source_name(source)
    try:
        return json.loads(read_bytes(source).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelReadError(f"label file {name} is not valid UTF-8 JSON ({exc})") from exc


def coco_reference(value: Any) -> tuple[Path, dict[str, Any]] | None:
    """``(file, {"image_id": ..} or {"file_name": ..})`` of a COCO reference, None when ``value`` is not one."""
    if not isinstance(value, Mapping) or "file" not in value:
        return None
    keys = set(value) - {"file"}
    if keys not in ({"image_id"}, {"file_name"}):
        raise LabelReadError(f"COCO reference {dict(value)!r} must have 'file' and exactly one of 'image_id', "
                             f"'file_name'")
    return Path(os.fspath(value["file"])), {k: value[k] for k in keys}


@attrs.frozen(kw_only=True)
class CocoImage:
    """One image of a COCO-style file: its entry (``id``, ``file_name``, ``width``, ``height``), its
    annotations, and the file's category names by id."""

    entry: Mapping[str, Any]
    annotations: tuple[Mapping[str, Any], ...]
    categories: Mapping[int, str]
    path: str

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) the file records for the image, None when it records none."""
        if "width" in self.entry and "height" in self.entry:
            return int(self.entry["height"]), int(self.entry["width"])
        return None

    def check_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) the annotations' pixel coordinates refer to: the file's, which must equal the image's."""
        size = self.size or tuple(image_size)
        if tuple(size) != tuple(image_size):
            raise LabelReadError(
                f"COCO file {self.path}: image {self.entry.get('id')} ({self.entry.get('file_name')}) is recorded as "
                f"{size[1]}x{size[0]} (W x H) but the image is {image_size[1]}x{image_size[0]}; the annotations are "
                f"for another version of the image")
        return size


class CocoIndex:
    """A COCO-style JSON file (``images``, ``annotations``, optional ``categories``) indexed by image id and
    by file name (full and base name); build it with :func:`coco_index`, which caches one per file."""

    def __init__(self, path: str, doc: Any):
        if not isinstance(doc, Mapping) or not isinstance(doc.get("images"), list):
            raise LabelReadError(f"COCO file {path} has no 'images' list; is it a COCO-style annotation file?")
        self.path = path
        self.categories = {int(c["id"]): str(c.get("name", c["id"])) for c in doc.get("categories", [])}
        self.by_id: dict[Any, Mapping[str, Any]] = {}
        self.by_name: dict[str, Any] = {}
        for img in doc["images"]:
            self.by_id[img["id"]] = img
            name = str(img.get("file_name", ""))
            self.by_name.setdefault(name, img["id"])
            self.by_name.setdefault(os.path.basename(name), img["id"])
        self.annotations: dict[Any, list[Mapping[str, Any]]] = {}
        for ann in doc.get("annotations", []):
            self.annotations.setdefault(ann.get("image_id"), []).append(ann)

    def image(self, key: Mapping[str, Any]) -> CocoImage:
        """The image ``{"image_id": ID}`` or ``{"file_name": NAME}`` names (a base name matches too)."""
        if "image_id" in key:
            image_id = key["image_id"]
            if image_id not in self.by_id and str(image_id).isdigit() and int(image_id) in self.by_id:
                image_id = int(image_id)
        else:
            name = str(key["file_name"])
            image_id = self.by_name.get(name, self.by_name.get(os.path.basename(name)))
        if image_id not in self.by_id:
            raise LabelReadError(f"COCO file {self.path} has no image {dict(key)!r}; check the id / file name")
        return CocoImage(entry=self.by_id[image_id], annotations=tuple(self.annotations.get(image_id, ())),
                         categories=self.categories, path=self.path)


_COCO_CACHE: dict[tuple[str, int, int], CocoIndex] = {}
_COCO_LOCK = threading.Lock()


def coco_index(path: str | os.PathLike[str]) -> CocoIndex:
    """The :class:`CocoIndex` of a file, parsed once per process (re-read when its size or mtime changes)."""
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LabelReadError(f"COCO file {path} does not exist; fix the 'file' of the reference") from None
    key = (path, st.st_mtime_ns, st.st_size)
    with _COCO_LOCK:
        if key not in _COCO_CACHE:
            doc = load_json_value(Path(path))
            for old in [k for k in _COCO_CACHE if k[0] == path]:
                del _COCO_CACHE[old]
            _COCO_CACHE[key] = CocoIndex(path, doc)
        return _COCO_CACHE[key]


def coco_image(value: Any) -> CocoImage | None:
    """The COCO image a reference names (None when ``value`` is not a reference)."""
    ref = coco_reference(value)
    if ref is None:
        return None
    path, key = ref
    return coco_index(path).image(key)


def xywh_to_unit_xyxy(bbox: Any, size: tuple[int, int], where: str) -> list[float]:
    """A COCO ``[x, y, w, h]`` pixel box as xyxy in [0, 1] of an image of ``size`` (H, W), clipped."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise LabelReadError(f"{where}: bbox {bbox!r} must be [x, y, width, height] in pixels") from None
    if not np.isfinite([x, y, w, h]).all() or w < 0 or h < 0:
        raise LabelReadError(f"{where}: bbox {bbox!r} must be finite with a non-negative width and height")
    H, W = size
    return [float(v) for v in np.clip([x / W, y / H, (x + w) / W, (y + h) / H], 0.0, 1.0)]


__all__ = [
    "ARRAY_SUFFIXES", "CocoImage", "CocoIndex", "LabelReadError", "check_size", "coco_image", "coco_index",
    "coco_reference", "fill_invalid_nearest", "is_file_source", "load_json_value", "read_array", "read_bytes",
    "source_name", "suffix_of", "xywh_to_unit_xyxy",
]
