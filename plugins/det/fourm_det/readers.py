"""Reader of real object boxes: COCO-style instances → the ``det`` raw (normalised xyxy boxes, class names).

Sources: a reference into a COCO instances file, ``{"file": "instances.json", "image_id": 139}`` (or
``"file_name"``): its annotations' ``bbox`` ``[x, y, w, h]`` pixels become xyxy in [0, 1] of the image,
their ``category_id`` the category's name (lower case, ``_`` as a space), score 1.0; crowd annotations
(``iscrowd: 1``) are left out unless ``include_crowd``. The file's recorded image size must equal the image's.
A raw in the ``det`` form itself (``{"boxes": [...], "classes": [...]}``, ``scores`` optional, e.g. from a
webdataset sample's JSON) is taken as it is, as is a ``.json`` file holding either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fourm_core.plugin_kit.readers import LabelReadError, coco_image, load_json_value, xywh_to_unit_xyxy
from fourm_core.plugin_kit.seqtext import SerializationError


class DetectionReader:
    """``read(reference, image_size=(H, W))`` → a ``det`` raw (see the module docstring)."""

    suffixes = (".json",)

    def __init__(self, *, spec: Any = None, include_crowd: bool = False):
        self.spec, self.include_crowd = spec, bool(include_crowd)

    def read(self, source: Any, *, image_size: tuple[int, int]) -> dict[str, Any]:
        from .components import validate_det

        value = load_json_value(source)
        img = coco_image(value)
        if img is not None:
            size = img.check_size(image_size)
            raw: dict[str, Any] = {"boxes": [], "classes": [], "scores": []}
            for ann in img.annotations:
                if ann.get("iscrowd") and not self.include_crowd:
                    continue
                cat = ann.get("category_id")
                if cat not in img.categories:
                    raise LabelReadError(f"COCO file {img.path}: annotation {ann.get('id')} of image "
                                         f"{img.entry.get('id')} has category_id {cat!r}, which its 'categories' "
                                         f"do not list")
                raw["boxes"].append(xywh_to_unit_xyxy(ann.get("bbox"), size, f"COCO file {img.path}, annotation "
                                                      f"{ann.get('id')}"))
                raw["classes"].append(img.categories[cat].replace("_", " ").lower())
                raw["scores"].append(1.0)
        elif isinstance(value, Mapping) and "boxes" in value and "classes" in value:
            raw = {"boxes": list(value["boxes"]), "classes": list(value["classes"]),
                   "scores": list(value.get("scores", [1.0] * len(value["boxes"])))}
        else:
            raise LabelReadError(f"det labels are a COCO reference {{'file': 'instances.json', 'image_id': ID}} or "
                                 f"a dict with 'boxes' and 'classes'; got {value!r:.100}")
        raw["image_size"] = [int(image_size[0]), int(image_size[1])]
        try:
            validate_det(raw)
        except SerializationError as exc:
            raise LabelReadError(str(exc)) from exc
        return raw
