"""Components of the ``human_pose`` modality.

Raw form (JSON)::

    {"format": "coco17",
     "persons": [{"box": [x0, y0, x1, y1],            # normalised xyxy of the person
                  "score": 0.98,                      # person detection score
                  "keypoints": [[x, y, v], ...]}]}    # 17 COCO keypoints, normalised; v = COCO visibility
                                                      # (0 absent, 1 occluded, 2 visible); absent = [0, 0, 0]
     "image_size": [H, W]}                              # optional: pixel size of the labeled image (for crops)

Serialization (this plugin's choice; 4M-21 serialized HMR2 SMPL parameters instead): at most
``max_persons`` (6) persons with the highest scores, ordered by the distance of their binned (x0, y0) to the
origin; per person ``human v0=x0 v1=y0 v2=x1 v3=y1`` followed by the 17 keypoints in COCO order, each
``v0=x v1=y`` (1000 bins, as boxes) when v > 0 or ``none`` when absent. No person: ``none``. Parsed
persons get score 1.0 and visible keypoints v = 2. A text cut inside its last person (at max_length) parses
without that person (logged); any other malformed text raises ``ValueError``. Worst case 6 × 39 = 234 tokens ≤ max_length 263.

The representation is open for SMPL poses: ``"format"`` names the per-person schema; an HMR2 labeler would
write ``"format": "smpl"`` persons (box + global orientation / body pose / betas / camera) and this
serializer would add a branch for it (4M-21: ``human <box> pose <MLP-VQ tokens> shape ... camera ...``).
Unknown formats raise.

Crops move boxes and keypoints; keypoints that leave the crop become absent; persons whose box loses its
area are dropped. A horizontal flip mirrors x and swaps left/right keypoints.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fourm_core.plugin_kit.seqtext import (
    SerializationError,
    TokenReader,
    TruncatedTextError,
    dequantize_coords,
    quantize_coords,
    value_token,
)

log = logging.getLogger(__name__)
MODALITY = "human_pose"
FORMAT = "coco17"
DEFAULT_WEIGHTS = "usyd-community/vitpose-base-simple"
DEFAULT_DETECTOR = "PekingU/rtdetr_r50vd_coco_o365"
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
#: keypoint index after a horizontal flip (left ↔ right)
FLIP_PERMUTATION = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
            (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


def empty_pose() -> dict[str, Any]:
    return {"format": FORMAT, "persons": []}


def validate_pose(raw: Any) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """[(box (4,), score, keypoints (17, 3))] of a human_pose raw; ``ValueError`` naming the modality otherwise."""
    if not isinstance(raw, dict) or "persons" not in raw:
        raise SerializationError(f"modality {MODALITY!r}: raw must be a dict {{'format': 'coco17', 'persons': [...]}}, got {raw!r:.100}")
    if raw.get("format", FORMAT) != FORMAT:
        raise SerializationError(f"modality {MODALITY!r}: pose format {raw.get('format')!r} is not supported by this "
                                 f"serializer (only {FORMAT!r}); SMPL poses need their own branch, see the module docs")
    out = []
    for i, p in enumerate(raw["persons"]):
        try:
            box = np.asarray(p["box"], dtype=np.float64).reshape(4)
            kps = np.asarray(p["keypoints"], dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
            score = float(p.get("score", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"modality {MODALITY!r}: person {i} needs 'box' (4 floats) and 'keypoints' "
                                     f"({NUM_KEYPOINTS} × [x, y, v]): {exc}") from exc
        if not (np.isfinite(box).all() and np.isfinite(kps).all()) or (box < 0).any() or (box > 1).any() \
                or (kps[:, :2] < 0).any() or (kps[:, :2] > 1).any():
            raise SerializationError(f"modality {MODALITY!r}: person {i}: coordinates must be finite and in [0, 1]")
        out.append((box, score, kps))
    return out


def _person(box: np.ndarray, score: float, kps: np.ndarray) -> dict[str, Any]:
    return {"box": [float(v) for v in box], "score": float(score),
            "keypoints": [[float(x), float(y), int(v)] for x, y, v in kps]}


class HumanPoseSerializer:
    """Persons ↔ ``human <box> <17 keypoints>`` (see the module docstring)."""

    def __init__(self, max_persons: int = 6, bins: int = 1000):
        self.max_persons, self.bins = max_persons, bins

    def to_text(self, raw: Any) -> str:
        persons = validate_pose(raw)
        if len(persons) > self.max_persons:
            persons = sorted(persons, key=lambda p: -p[1])[: self.max_persons]
        if not persons:
            return "none"
        items = []
        for box, _, kps in persons:
            qb = quantize_coords(box, self.bins)
            qb = np.concatenate([np.minimum(qb[:2], qb[2:]), np.maximum(qb[:2], qb[2:])])
            qk = quantize_coords(kps[:, :2], self.bins)
            vis = kps[:, 2] > 0
            items.append((int(qb[0]) ** 2 + int(qb[1]) ** 2, qb.tolist(), [tuple(q) if v else () for q, v in zip(qk.tolist(), vis)]))
        items.sort(key=lambda it: (it[0], it[1], it[2]))
        tokens: list[str] = []
        for _, qb, kp in items:
            tokens.append("human")
            tokens += [value_token(a, qb[a]) for a in range(4)]
            for k in kp:
                tokens += [value_token(0, k[0]), value_token(1, k[1])] if k else ["none"]
        return " ".join(tokens)

    def grammar(self):
        """The text's grammar for constrained decoding: ``none``, or persons (as many as the length allows), each ``human``,
        four box tokens and 17 keypoints (``v0=x v1=y`` or ``none``)."""
        from fourm_core.generation.grammar import Grammar, alt, repeat, seq, value, words

        top = self.bins - 1
        keypoint = alt(seq(value(0, 0, top), value(1, 0, top)), words("none"))
        person = seq(words("human"), *(value(a, 0, top) for a in range(4)), repeat(keypoint, NUM_KEYPOINTS, NUM_KEYPOINTS))
        return Grammar(alt(words("none"), repeat(person, 1)))

    def from_text(self, text: str) -> dict[str, Any]:
        r = TokenReader(text, MODALITY)
        out = empty_pose()
        if r.peek() == "none" and len(r.tokens) == 1 or r.done():
            return out
        while not r.done():
            r.literal("human")
            try:
                qb = np.asarray([r.value(axis=a)[1] for a in range(4)])
                qb = np.concatenate([np.minimum(qb[:2], qb[2:]), np.maximum(qb[:2], qb[2:])])
                kps = np.zeros((NUM_KEYPOINTS, 3))
                for j in range(NUM_KEYPOINTS):
                    if r.peek() == "none":
                        r.next("none")
                        continue
                    x = r.value(axis=0)[1]
                    y = r.value(axis=1)[1]
                    kps[j] = [*dequantize_coords([x, y], self.bins), 2]
            except TruncatedTextError:
                log.warning("human_pose: dropped an incomplete last person (text cut at max_length?)")
                break
            out["persons"].append(_person(dequantize_coords(qb, self.bins), 1.0, kps))
        return out


class HumanPoseTransform:
    """Boxes and keypoints follow the crop (raw rgb pixels of the raw's ``image_size``, else ``raw_size``) and
    the flip."""

    def __init__(self, raw_size: int = 256):
        self.raw_size = raw_size

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             raw_size: int | tuple[int, int] | None = None) -> dict[str, Any]:
        from fourm_core.plugin_kit.boxes import crop_boxes, crop_points
        from fourm_det.components import image_size_of

        persons = validate_pose(raw)
        rs = image_size_of(raw, raw_size, self.raw_size)
        out = {"format": raw.get("format", FORMAT), "persons": [], "image_size": [int(v) for v in (size or box[2:])]}
        for pbox, score, kps in persons:
            nb, keep = crop_boxes(pbox[None], box, rs, flip=flip)
            if not keep[0]:
                continue
            pts, inside = crop_points(kps[:, :2], box, rs, flip=flip)
            vis = (kps[:, 2] > 0) & inside
            new = np.zeros_like(kps)
            new[vis, :2] = pts[vis]
            new[vis, 2] = kps[vis, 2]
            if flip:
                new = new[list(FLIP_PERMUTATION)]
            out["persons"].append(_person(nb[0], score, new))
        return out


class HumanPoseLabeler:
    """Person detector (``fourm_det``'s transformers detector; RT-DETR by default) then ViTPose
    (``VitPoseForPoseEstimation`` + ``VitPoseImageProcessor``) on the person boxes, batched over images.

    Persons: class ``person`` with score ≥ ``person_threshold`` (at most ``max_persons`` per image).
    Keypoints with a heat-map score < ``keypoint_threshold`` or outside the image are stored absent.
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 8, *,
                 detector_weights: str | None = None, person_threshold: float = 0.5, keypoint_threshold: float = 0.3,
                 max_persons: int = 20):
        from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

        from fourm_core.plugin_kit.hub import resolve_device
        from fourm_core.plugin_kit.labelers import load_processor_and_model
        from fourm_det.components import DetectionLabeler

        self.weights = weights or DEFAULT_WEIGHTS
        self.device = resolve_device(device)
        self.batch_size, self.keypoint_threshold, self.max_persons = batch_size, keypoint_threshold, max_persons
        self.detector = DetectionLabeler(weights=detector_weights or DEFAULT_DETECTOR, device=self.device,
                                         batch_size=batch_size, threshold=person_threshold, modality=MODALITY)
        self.processor, self.model = load_processor_and_model(
            VitPoseImageProcessor.from_pretrained, VitPoseForPoseEstimation.from_pretrained, self.weights,
            modality=MODALITY, device=self.device)

    def __call__(self, inputs: dict[str, list[Any]]) -> list[dict[str, Any]]:
        import torch

        images = [np.asarray(im) for im in inputs["rgb"]]
        dets = self.detector.detect(images)
        results = [{**empty_pose(), "image_size": [int(v) for v in im.shape[:2]]} for im in images]
        # person boxes (normalised xyxy) per image, highest scores first
        people = []
        for det in dets:
            idx = [i for i, c in enumerate(det["classes"]) if c == "person"][: self.max_persons]
            people.append((np.asarray([det["boxes"][i] for i in idx]).reshape(-1, 4), [det["scores"][i] for i in idx]))
        todo = [i for i, (b, _) in enumerate(people) if len(b)]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            ims = [images[i] for i in chunk]
            px_boxes = []
            for i in chunk:
                h, w = images[i].shape[:2]
                b = people[i][0] * np.array([w, h, w, h])
                px_boxes.append(np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).astype(np.float32))
            enc = self.processor(ims, boxes=px_boxes, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self.model(**enc)
            poses = self.processor.post_process_pose_estimation(outputs, boxes=px_boxes)
            for i, image_poses in zip(chunk, poses):
                h, w = images[i].shape[:2]
                for (pbox, score), pose in zip(zip(*people[i]), image_poses):
                    xy = pose["keypoints"].float().cpu().numpy() / np.array([w, h])
                    s = pose["scores"].float().cpu().numpy()
                    vis = (s >= self.keypoint_threshold) & (xy >= 0).all(1) & (xy <= 1).all(1)
                    kps = np.zeros((NUM_KEYPOINTS, 3))
                    kps[vis, :2] = np.round(xy[vis], 5)
                    kps[vis, 2] = 2
                    results[i]["persons"].append(_person(np.asarray(pbox), score, kps))
        return results


def visualize(raw: Any, image: np.ndarray | None = None, *, size: int = 256):
    """Person boxes and COCO skeletons over ``image`` (uint8 HxWx3) or a grey canvas of ``size``²."""
    from PIL import Image, ImageDraw

    from fourm_core.plugin_kit.images import fixed_palette

    persons = validate_pose(raw)
    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB") if image is not None \
        else Image.new("RGB", (size, size), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    colors = [tuple(int(c) for c in col) for col in fixed_palette(max(len(persons), 1), seed=3)]
    for (box, _, kps), color in zip(persons, colors):
        draw.rectangle([box[0] * (w - 1), box[1] * (h - 1), box[2] * (w - 1), box[3] * (h - 1)], outline=color, width=1)
        pts = [(x * (w - 1), y * (h - 1)) for x, y, _ in kps]
        for a, b in SKELETON:
            if kps[a, 2] > 0 and kps[b, 2] > 0:
                draw.line([pts[a], pts[b]], fill=color, width=2)
        for (x, y), v in zip(pts, kps[:, 2]):
            if v > 0:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255))
    return canvas
