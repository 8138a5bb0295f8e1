"""Instance masks in JSON: run-length encoding, boxes, crops — the raw form of ``sam_instance``.

A stored sample (what the labeler writes) is::

    {"size": [H, W],                      # the raw rgb image the masks belong to
     "instances": [{"box": [x0, y0, x1, y1],   # normalised [0, 1] xyxy of the raw image (tight box)
                    "area": int,                # mask pixels
                    "score": float,             # SAM's predicted IoU
                    "rle": [n0, n1, ...],       # run lengths of the row-major H*W mask, starting with zeros
                    "tokens": [16 ints]}]}      # optional: mask-tokenizer ids of the box-cropped 64x64 mask

Instances are sorted by decreasing area. ``tokens`` is dropped by a crop (the mask changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MODALITY = "sam_instance"


def rle_encode(mask: np.ndarray) -> list[int]:
    """Row-major run lengths of a boolean (H, W) mask, the first run counting zeros (possibly 0)."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # positions where the value flips
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    return [int(r) for r in runs]


def rle_decode(rle: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`rle_encode`: a boolean (H, W) mask. Raises ``ValueError`` on inconsistent runs."""
    h, w = int(size[0]), int(size[1])
    runs = np.asarray(rle, dtype=np.int64)
    if runs.ndim != 1 or (runs < 0).any() or int(runs.sum()) != h * w:
        raise ValueError(f"{MODALITY}: run-length mask does not cover {h}x{w} pixels (sum {int(runs.sum()) if runs.ndim == 1 else '?'}); "
                         f"the stored raw is corrupt, re-label it with `fourm label --modalities {MODALITY} --overwrite`")
    values = np.arange(runs.size) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, runs).reshape(h, w)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes (N, 4) xyxy in pixel-edge coordinates (x1 = last column + 1) of boolean masks (N, H, W).
    Empty masks get (0, 0, 0, 0)."""
    m = np.asarray(masks, dtype=bool)
    n, h, w = m.shape
    rows, cols = m.any(axis=2), m.any(axis=1)  # (N, H), (N, W)
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1, y1], axis=1).astype(np.float64)
    boxes[~rows.any(axis=1)] = 0
    return boxes


def decode_instances(raw: dict[str, Any]) -> np.ndarray:
    """All masks of a stored sample as a boolean array (N, H, W)."""
    check_raw(raw)
    h, w = raw["size"]
    inst = raw["instances"]
    if not inst:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([rle_decode(i["rle"], (h, w)) for i in inst])


def encode_instances(masks: np.ndarray, scores: Sequence[float] | None = None) -> dict[str, Any]:
    """Boolean masks (N, H, W) → a stored sample (empty masks dropped, sorted by decreasing area)."""
    m = np.asarray(masks, dtype=bool)
    n, h, w = m.shape
    areas = m.reshape(n, -1).sum(axis=1)
    boxes = masks_to_boxes(m) / np.array([w, h, w, h], dtype=np.float64)
    order = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] > 0]
    instances = []
    for i in order:
        item: dict[str, Any] = {"box": [round(float(v), 6) for v in boxes[i]], "area": int(areas[i])}
        if scores is not None:
            item["score"] = round(float(scores[i]), 4)
        item["rle"] = rle_encode(m[i])
        instances.append(item)
    return {"size": [int(h), int(w)], "instances": instances}


def check_raw(raw: Any) -> None:
    """Raise ``ValueError`` naming the modality and the problem when ``raw`` is not a stored sample."""
    if not isinstance(raw, dict) or "instances" not in raw or "size" not in raw:
        raise ValueError(f"{MODALITY}: expected a dict with 'size' and 'instances' (a labeler output), got "
                         f"{type(raw).__name__}{' with keys ' + str(sorted(raw)) if isinstance(raw, dict) else ''}")
    size = raw["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise ValueError(f"{MODALITY}: 'size' must be [H, W] positive ints, got {size!r}")
    if not isinstance(raw["instances"], list):
        raise ValueError(f"{MODALITY}: 'instances' must be a list")
    for k, inst in enumerate(raw["instances"]):
        if not isinstance(inst, dict) or "rle" not in inst or "box" not in inst:
            raise ValueError(f"{MODALITY}: instance {k} needs 'box' and 'rle'")
        if len(inst["box"]) != 4:
            raise ValueError(f"{MODALITY}: instance {k} box must be [x0, y0, x1, y1], got {inst['box']!r}")


def crop_instances(raw: dict[str, Any], box: tuple[int, int, int, int], flip: bool = False,
                   size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The sample seen through crop ``box`` = (top, left, height, width) of the raw image, optionally flipped
    horizontally and resized (nearest) to ``size`` (default: the box's size). Masks are cut, boxes recomputed,
    instances that leave the crop dropped, mask tokens removed."""
    from fourm_core.plugin_kit.images import crop_resize

    masks = decode_instances(raw)  # (N, H, W)
    top, left, bh, bw = (int(v) for v in box)
    out_size = (int(size[0]), int(size[1])) if size is not None else (bh, bw)
    scores = [i.get("score", 0.0) for i in raw["instances"]]
    if masks.shape[0] == 0:
        return {"size": list(out_size), "instances": []}
    stack = masks.transpose(1, 2, 0).astype(np.uint8)  # (H, W, N)
    cropped = crop_resize(stack, (top, left, bh, bw), out_size, flip=flip, interpolation="nearest")
    out = encode_instances(cropped.transpose(2, 0, 1).astype(bool),
                           scores=scores if any("score" in i for i in raw["instances"]) else None)
    return out


def box_crops(masks: np.ndarray, boxes_px: np.ndarray, size: int = 64) -> np.ndarray:
    """Each mask cut to its box (pixel xyxy) and resized to ``size`` × ``size``: float32 (N, 1, size, size) in
    {0, 1} — what the mask tokenizer encodes (shape inside the box; the box itself is serialized apart)."""
    import cv2

    out = np.zeros((len(masks), 1, size, size), dtype=np.float32)
    for k, (m, b) in enumerate(zip(masks, boxes_px)):
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = np.ascontiguousarray(m[y0:y1, x0:x1].astype(np.float32))
        out[k, 0] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
    return out


def paste_box_crops(crops: np.ndarray, boxes: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`box_crops`: (N, s, s) float masks in [0, 1] pasted into normalised boxes (N, 4) of an
    (H, W) image → boolean (N, H, W)."""
    import cv2

    h, w = int(size[0]), int(size[1])
    out = np.zeros((len(crops), h, w), dtype=bool)
    for k, (c, b) in enumerate(zip(crops, boxes)):
        x0, y0 = int(np.floor(b[0] * w)), int(np.floor(b[1] * h))
        x1, y1 = int(np.ceil(b[2] * w)), int(np.ceil(b[3] * h))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        out[k, y0:y1, x0:x1] = cv2.resize(np.asarray(c, np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) >= 0.5
    return out


def boundaries(masks: np.ndarray, *, thickness: int = 1) -> np.ndarray:
    """Union of the instance boundaries of boolean masks (N, H, W) → boolean (H, W).

    A pixel is on the boundary of an instance when it belongs to the mask and one of its 4-neighbours does
    not (pixels on the image border do not count as boundary). ``thickness`` > 1 dilates the result.
    """
    m = np.asarray(masks, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"{MODALITY}: boundaries() expects masks (N, H, W), got {m.shape}")
    if m.shape[0] == 0:
        return np.zeros(m.shape[1:], dtype=bool)
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)), mode="edge")
    interior = p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    edge = (m & ~interior).any(axis=0)
    if thickness > 1:
        import cv2

        kernel = np.ones((thickness, thickness), np.uint8)
        edge = cv2.dilate(edge.astype(np.uint8), kernel) > 0
    return edge
