"""Reader of real captions → the ``caption`` raw (a ``str``).

Sources: the caption itself (a string; a manifest cell, a ``datasets`` column, a webdataset sample's JSON
key); a ``.txt`` file (a webdataset member, a path); a reference into a COCO captions file
``{"file": "captions.json", "image_id": 139}`` (or ``"file_name"``), which takes the image's ``index``-th
caption (default the first, in file order). Whitespace runs collapse to one space; an empty caption is an
error.
"""

from __future__ import annotations

from typing import Any

from fourm_core.plugin_kit.readers import LabelReadError, coco_image, is_file_source, read_bytes, source_name, suffix_of


class CaptionReader:
    """``read(source, image_size=(H, W))`` → the caption text (see the module docstring)."""

    suffixes = (".txt", ".json")

    def __init__(self, *, spec: Any = None, index: int = 0):
        self.spec, self.index = spec, int(index)

    def read(self, source: Any, *, image_size: tuple[int, int]) -> str:
        from fourm_core.plugin_kit.readers import load_json_value

        from .components import normalize_caption

        where = "caption"
        if is_file_source(source) and suffix_of(source) == ".txt":
            where = f"caption file {source_name(source)}"
            try:
                value: Any = read_bytes(source).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise LabelReadError(f"{where} is not UTF-8 text ({exc})") from exc
        else:
            value = load_json_value(source)
            img = coco_image(value)
            if img is not None:
                texts = [a.get("caption") for a in img.annotations if isinstance(a.get("caption"), str)]
                if len(texts) <= self.index:
                    raise LabelReadError(f"COCO file {img.path}: image {img.entry.get('id')} has {len(texts)} "
                                         f"caption(s), the reader takes caption {self.index}")
                value = texts[self.index]
        if not isinstance(value, str):
            raise LabelReadError(f"a caption must be a string, a .txt file or a COCO captions reference; got "
                                 f"{value!r:.100}")
        text = normalize_caption(value)
        if not text:
            raise LabelReadError(f"{where} is empty; drop the sample or give it a caption")
        return text
