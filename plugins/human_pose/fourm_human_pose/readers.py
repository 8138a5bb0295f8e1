"""Reader of real human poses: COCO person keypoints → the ``human_pose`` raw (``coco17`` persons).

Sources: a reference into a COCO person-keypoints file, ``{"file": "person_keypoints.json", "image_id": 139}``
(or ``"file_name"``): every annotation with ``keypoints`` (17 × ``[x, y, v]`` pixels, COCO visibility v) and
a ``bbox`` becomes a person, box and keypoints normalised to [0, 1] of the image, score 1.0; absent
keypoints (v = 0) are ``[0, 0, 0]``; crowd annotations are left out. A raw in the ``human_pose`` form itself
(``{"persons": [...]}``) is taken as it is, as is a ``.json`` file holding either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fourm_core.plugin_kit.readers import LabelReadError, coco_image, load_json_value, xywh_to_unit_xyxy
from fourm_core.plugin_kit.seqtext import SerializationError


class HumanPoseReader:
    """``read(reference, image_size=(H, W))`` → a ``human_pose`` raw (see the module docstring)."""

    suffixes = (".json",)

    def __init__(self, *, spec: Any = None):
        self.spec = spec

    def read(self, source: Any, *, image_size: tuple[int, int]) -> dict[str, Any]:
        from .components import FORMAT, NUM_KEYPOINTS, validate_pose

        value = load_json_value(source)
        img = coco_image(value)
        if img is not None:
            H, W = img.check_size(image_size)
            persons = []
            for ann in img.annotations:
                if ann.get("iscrowd") or "keypoints" not in ann:
                    continue
                where = f"COCO file {img.path}, annotation {ann.get('id')}"
                kps = np.asarray(ann["keypoints"], dtype=np.float64)
                if kps.size != NUM_KEYPOINTS * 3:
                    raise LabelReadError(f"{where}: 'keypoints' has {kps.size} numbers, COCO person keypoints have "
                                         f"{NUM_KEYPOINTS} × [x, y, v]")
                kps = kps.reshape(NUM_KEYPOINTS, 3)
                vis = kps[:, 2] > 0
                norm = np.zeros_like(kps)
                norm[vis, 0] = np.clip(kps[vis, 0] / W, 0.0, 1.0)
                norm[vis, 1] = np.clip(kps[vis, 1] / H, 0.0, 1.0)
                norm[vis, 2] = kps[vis, 2]
                persons.append({"box": xywh_to_unit_xyxy(ann.get("bbox"), (H, W), where), "score": 1.0,
                                "keypoints": [[float(x), float(y), int(v)] for x, y, v in norm]})
            raw: dict[str, Any] = {"format": FORMAT, "persons": persons}
        elif isinstance(value, Mapping) and "persons" in value:
            raw = {"format": value.get("format", FORMAT), "persons": list(value["persons"])}
        else:
            raise LabelReadError(f"human_pose labels are a COCO keypoints reference {{'file': 'person_keypoints.json', "
                                 f"'image_id': ID}} or a dict with 'persons'; got {value!r:.100}")
        raw["image_size"] = [int(image_size[0]), int(image_size[1])]
        try:
            validate_pose(raw)
        except SerializationError as exc:
            raise LabelReadError(str(exc)) from exc
        return raw
