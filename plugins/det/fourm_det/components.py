"""Components of the ``det`` modality.

Raw form (JSON)::

    {"boxes": [[x0, y0, x1, y1], ...],   # xyxy, normalised to [0, 1] of the raw image
     "classes": ["person", "traffic light", ...],   # class names (lower-case words; '_' reads as a space)
     "scores": [0.97, ...],
     "image_size": [H, W],   # optional: pixel size of the labeled image, so crops work at any raw size
     "ordered": true}        # optional: the boxes are in text order already (what from_text returns)

Serialization (4M-21, token for token): boxes with a score below ``threshold`` (0.6) are dropped; at most
``max_boxes`` (50; ``None``: no cap) are kept (highest scores); the boxes are ordered by the distance of
their (x0, y0) to the origin (stable: ties keep the raw order); per box
``v0=x0 v1=y0 v2=x1 v3=y1 <class>`` with coordinates ``round(v · 999)`` (parsed back to ``b / 999``,
error ≤ 0.0005), corners as given. A raw marked ``"ordered": true`` (a parsed text) keeps its order, so
``to_text(from_text(t)) == t`` even where rounding swapped two nearly equal distances. A class name is written as its words (``traffic light``: one token of
the vocabulary, where the plugin declares the 80 COCO names as the released vocabulary does; other names,
e.g. of an open-vocabulary detector, are ordinary words). Parsed boxes get score 1.0 and class names as
their words. An image without boxes serializes to the empty string. A text cut inside its last box (at
max_length) parses without that box (logged); any other malformed text raises ``ValueError``. Worst case
with COCO classes: 50 × 6 = 300 tokens; max_length 256 cuts the text (as 4M's masking does).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fourm_core.plugin_kit.seqtext import (
    SerializationError,
    TokenReader,
    TruncatedTextError,
    class_words,
    parse_value_token,
    round_coords,
    unround_coords,
    value_token,
)

log = logging.getLogger(__name__)
MODALITY = "det"
DEFAULT_WEIGHTS = "facebook/detr-resnet-50"


def empty_det() -> dict[str, list]:
    return {"boxes": [], "classes": [], "scores": []}


def validate_det(raw: Any, modality: str = MODALITY) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(boxes (N, 4) float64, class names as words, scores (N,)) of a det raw; ``ValueError`` naming the
    modality otherwise."""
    if not isinstance(raw, dict) or not {"boxes", "classes", "scores"} <= set(raw):
        raise SerializationError(f"modality {modality!r}: raw must be a dict with 'boxes', 'classes', 'scores'; got {raw!r:.100}")
    boxes = np.asarray(raw["boxes"], dtype=np.float64).reshape(-1, 4) if len(raw["boxes"]) else np.zeros((0, 4))
    classes, scores = list(raw["classes"]), np.asarray(raw["scores"], dtype=np.float64).reshape(-1)
    if not len(boxes) == len(classes) == len(scores):
        raise SerializationError(f"modality {modality!r}: {len(boxes)} boxes, {len(classes)} classes and {len(scores)} scores differ in number")
    if not np.isfinite(boxes).all() or (boxes < 0).any() or (boxes > 1).any():
        raise SerializationError(f"modality {modality!r}: box coordinates must be finite and in [0, 1] (normalised xyxy)")
    words = []
    for c in classes:
        w = class_words(c) if isinstance(c, str) else ""
        if not w or any(parse_value_token(t) is not None for t in w.split()):
            raise SerializationError(f"modality {modality!r}: class name {c!r} must be words such as 'traffic light' "
                                     f"(not empty, no value tokens vK=N)")
        words.append(w)
    return boxes, words, scores


class DetectionSerializer:
    """Boxes ↔ ``v0=x0 v1=y0 v2=x1 v3=y1 class ...`` (see the module docstring)."""

    #: box orders: 4M-21's default (distance of (x0, y0) to the origin) or the raw's order
    ORDERS = ("dist_to_orig", "given")

    def __init__(self, threshold: float = 0.6, max_boxes: int | None = 50, bins: int = 1000,
                 order: str = "dist_to_orig", classes: tuple[str, ...] | None = None):
        if order not in self.ORDERS:
            raise ValueError(f"modality {MODALITY!r}: order must be one of {', '.join(self.ORDERS)}, got {order!r}")
        self.threshold, self.max_boxes, self.bins, self.order = threshold, max_boxes, bins, order
        #: class names generated text may use (the grammar's; default the 80 COCO classes); parsing accepts any
        self.classes = tuple(classes) if classes is not None else None

    def grammar(self):
        """The text's grammar for constrained decoding: boxes, each four coordinate tokens ``v0= v1= v2= v3=`` and
        one class name (how many the length allows: parsing takes any number)."""
        from fourm_core.generation.grammar import Grammar, repeat, seq, value, words

        from .classes import COCO_CLASSES

        names = [class_words(c) for c in (self.classes or COCO_CLASSES)]
        top = self.bins - 1
        box = seq(*(value(a, 0, top) for a in range(4)), words(*names))
        return Grammar(repeat(box))

    def to_text(self, raw: Any) -> str:
        boxes, classes, scores = validate_det(raw)
        keep = np.flatnonzero(scores >= self.threshold)
        if self.max_boxes is not None and len(keep) > self.max_boxes:
            keep = keep[np.argsort(-scores[keep], kind="stable")[: self.max_boxes]]
        if self.order == "dist_to_orig" and not raw.get("ordered"):
            keep = keep[np.argsort(boxes[keep, 0] ** 2 + boxes[keep, 1] ** 2, kind="stable")]
        q = round_coords(boxes[keep], self.bins)  # (K, 4)
        tokens = []
        for j, i in enumerate(keep):
            tokens += [value_token(a, q[j, a]) for a in range(4)] + [classes[i]]
        return " ".join(tokens)

    def from_text(self, text: str) -> dict[str, list]:
        r = TokenReader(text, MODALITY)
        out: dict[str, Any] = {**empty_det(), "ordered": True}
        while not r.done():
            try:
                coords = [r.value(axis=a)[1] for a in range(4)]
            except TruncatedTextError:
                log.warning("det: dropped an incomplete last box (text cut at max_length?): %r", " ".join(r.tokens[-4:]))
                break
            words = []
            while not r.done() and parse_value_token(r.peek() or "") is None:
                words.append(r.next("a class name"))
            if not words:
                if r.done():
                    log.warning("det: dropped the last box, which has no class (text cut at max_length?)")
                    break
                raise r.fail("a class name after the box 'v0= v1= v2= v3='")
            name = class_words(" ".join(words))
            if not name:
                raise r.fail(f"a class name, got only {' '.join(words)!r}")
            out["boxes"].append([float(v) for v in unround_coords(coords, self.bins)])
            out["classes"].append(name)
            out["scores"].append(1.0)
        return out


def image_size_of(raw: dict[str, Any], raw_size: int | tuple[int, int] | None, default: int) -> tuple[int, int]:
    """(H, W) the crop box refers to: the raw's ``image_size`` when recorded, else ``raw_size``, else ``default``."""
    size = raw.get("image_size") or raw_size or default
    size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
    if len(size) != 2 or min(size) <= 0:
        raise SerializationError(f"image size {size!r} must be (height, width) > 0")
    return size


class DetectionTransform:
    """Boxes follow the sample's crop (in raw rgb pixels) and flip; boxes that lose their area are dropped; the
    others are clipped to the crop. The pixel size the box refers to is the raw's ``image_size`` (written by
    the labeler), else the ``raw_size`` argument, else the transform's ``raw_size`` (the store default 256)."""

    def __init__(self, raw_size: int = 256):
        self.raw_size = raw_size

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             raw_size: int | tuple[int, int] | None = None) -> dict[str, list]:
        from fourm_core.plugin_kit.boxes import crop_boxes

        boxes, classes, scores = validate_det(raw)
        rs = image_size_of(raw, raw_size, self.raw_size)
        out = empty_det()
        out["image_size"] = [int(v) for v in (size or box[2:])]
        if not len(boxes):
            return out
        # a box is dropped when its clipped area is 0 (4M: albumentations' filter_bboxes, min_visibility 0)
        new, keep = crop_boxes(boxes, box, rs, flip=flip, min_size=0.0)
        out.update({"boxes": [[float(v) for v in b] for b in new[keep]],
                    "classes": [c for c, k in zip(classes, keep) if k],
                    "scores": [float(s) for s in scores[keep]]})
        return out


class DetectionLabeler:
    """A transformers object detector (DETR, RT-DETR, Deformable DETR, ... through
    ``AutoModelForObjectDetection``) with its image processor; batched, on ``device``.

    Keeps detections with score ≥ ``threshold`` (0.3; the serializer drops < 0.6 later, so the store keeps
    the raw evidence), class names from ``model.config.id2label`` as lower-case words (``traffic light``).
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 8, *,
                 threshold: float = 0.3, max_detections: int = 100, modality: str = MODALITY):
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        from fourm_core.plugin_kit.hub import resolve_device
        from fourm_core.plugin_kit.labelers import load_processor_and_model

        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.batch_size, self.threshold, self.max_detections = batch_size, threshold, max_detections
        self.processor, self.model = load_processor_and_model(
            AutoImageProcessor.from_pretrained, AutoModelForObjectDetection.from_pretrained, self.weights,
            modality=modality, device=self.device)
        self.id2name = {int(i): class_words(n) for i, n in self.model.config.id2label.items()}

    def detect(self, images: list[np.ndarray]) -> list[dict[str, list]]:
        """Detections per image: boxes normalised xyxy, class names, scores (sorted by score)."""
        import torch

        from fourm_core.plugin_kit.labelers import batches, check_rgb_image

        results: list[dict[str, list]] = []
        for chunk in batches(images, self.batch_size):
            batch = [check_rgb_image(im, MODALITY, "detector input") for im in chunk]
            enc = self.processor(images=batch, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self.model(**enc)
            sizes = [im.shape[:2] for im in batch]
            post = self.processor.post_process_object_detection(outputs, threshold=self.threshold, target_sizes=sizes)
            for res, (h, w) in zip(post, sizes):
                scores = res["scores"].float().cpu().numpy()
                order = np.argsort(-scores, kind="stable")[: self.max_detections]
                boxes = res["boxes"].float().cpu().numpy()[order] / np.array([w, h, w, h], dtype=np.float64)
                boxes = np.clip(boxes, 0.0, 1.0)
                labels = res["labels"].cpu().numpy()[order]
                results.append({
                    "boxes": [[round(float(v), 5) for v in b] for b in boxes],
                    "classes": [self.id2name.get(int(l), f"class {int(l)}") for l in labels],
                    "scores": [round(float(s), 4) for s in scores[order]],
                    "image_size": [int(h), int(w)],
                })
        return results

    def __call__(self, inputs: dict[str, list[Any]]) -> list[dict[str, list]]:
        return self.detect(inputs["rgb"])


def _class_color(name: str) -> tuple[int, int, int]:
    import zlib

    from fourm_core.plugin_kit.images import fixed_palette

    return tuple(int(v) for v in fixed_palette(64)[zlib.crc32(name.encode()) % 64])


def visualize(raw: Any, image: np.ndarray | None = None, *, size: int = 256, threshold: float = 0.0):
    """Boxes with their class names drawn over ``image`` (uint8 HxWx3) or a grey canvas of ``size``²."""
    from PIL import Image, ImageDraw

    boxes, classes, scores = validate_det(raw)
    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB") if image is not None \
        else Image.new("RGB", (size, size), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    for b, c, s in zip(boxes, classes, scores):
        if s < threshold:
            continue
        color = _class_color(c)
        xy = [b[0] * (w - 1), b[1] * (h - 1), b[2] * (w - 1), b[3] * (h - 1)]
        draw.rectangle(xy, outline=color, width=2)
        draw.text((xy[0] + 2, xy[1] + 1), f"{c} {s:.2f}", fill=color)
    return canvas
