"""COCO-style mean average precision of boxes or masks, computed as ``pycocotools.cocoeval.COCOeval`` does
(area range "all", at most ``max_dets`` detections per image and class, no crowd references):

* per image and class, detections are sorted by decreasing score (stable) and cut to ``max_dets``; at each
  IoU threshold ``t`` in 0.50, 0.55, ..., 0.95 each detection in turn takes the still unmatched reference of
  highest IoU ``>= t`` (the last one on ties);
* per class, the detections of all images are sorted by score (stable, images in the order they were
  scored), precision and recall are accumulated, precision is made non-increasing from the right and read at
  the 101 recall points 0, 0.01, ..., 1 (0 past the highest recall);
* AP of a class is the mean over recall points (and thresholds for ``mAP``); classes without references are
  left out; ``mAP`` is the mean over classes, ``mAP50`` / ``mAP75`` at one threshold.

Box IoU is taken on ``[x0, y0, x1, y1]`` boxes in any unit (IoU does not change when both axes are scaled),
mask IoU on boolean masks of the reference's size (a predicted mask of another size is resized, nearest).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from .base import Accumulator

#: the IoU thresholds of COCO's AP: 0.50, 0.55, ..., 0.95
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: the recall points precision is read at: 0, 0.01, ..., 1
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@attrs.frozen
class Instances:
    """The objects of one raw: ``labels`` (one class name each; one shared name for class-agnostic
    modalities), ``scores`` (N,), and ``boxes`` (N, 4) xyxy, ``masks`` (N, H, W) boolean or ``keypoints``
    (N, K, 3) ``[x, y, visibility]``; ``image_size`` (H, W) when the raw knows the pixel size its
    normalised coordinates refer to."""

    labels: list[str]
    scores: np.ndarray
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    image_size: tuple[int, int] | None = None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes (a degenerate box has IoU 0 with everything)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), 1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), 1)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boolean masks (N, H, W) of one size (one matrix product)."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0).astype(np.float64)


def greedy_match(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """``(T, D)`` matched flags of detections (rows of ``ious``, already in score order) against references
    (columns), at each threshold, by COCO's greedy rule. Sequential over detections (each depends on the
    references taken before), vectorised over thresholds and references."""
    n_t, (n_d, n_g) = len(thresholds), ious.shape
    matched = np.zeros((n_t, n_d), bool)
    if n_d == 0 or n_g == 0:
        return matched
    taken = np.zeros((n_t, n_g), bool)
    limit = np.minimum(thresholds, 1 - 1e-10)[:, None]
    rows = np.arange(n_t)
    for d in range(n_d):
        cand = (ious[d][None] >= limit) & ~taken
        value = np.where(cand, ious[d][None], -1.0)
        g = n_g - 1 - np.argmax(value[:, ::-1], axis=1)  # the last of the highest IoUs
        ok = cand.any(1)
        matched[ok, d] = True
        taken[rows[ok], g[ok]] = True
    return matched


def precision_at_recalls(scores: np.ndarray, matched: np.ndarray, n_ref: int) -> np.ndarray:
    """``(T, 101)`` interpolated precision of one class from the concatenated detections of all images."""
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(matched[:, order], axis=1, dtype=np.float64)
    fp = np.cumsum(~matched[:, order], axis=1, dtype=np.float64)
    out = np.zeros((matched.shape[0], len(RECALL_POINTS)))
    if tp.shape[1] == 0:
        return out
    recall = tp / n_ref
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # non-increasing envelope
    for t in range(matched.shape[0]):
        q = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        inside = q < recall.shape[1]
        out[t, inside] = precision[t, q[inside]]
    return out


def ap_figures(per_class: dict[str, tuple[list[np.ndarray], list[np.ndarray], int]]) -> dict[str, float]:
    """mAP, mAP50, mAP75 from per class (score arrays, matched arrays, reference count); NaN without any
    class that has references."""
    curves = [precision_at_recalls(np.concatenate(s) if s else np.zeros(0),
                                   np.concatenate(m, axis=1) if m else np.zeros((len(IOU_THRESHOLDS), 0), bool),
                                   n)
              for s, m, n in per_class.values() if n > 0]
    if not curves:
        return {"mAP": float("nan"), "mAP50": float("nan"), "mAP75": float("nan")}
    p = np.stack(curves)  # (K, T, R)
    return {"mAP": float(p.mean()), "mAP50": float(p[:, 0].mean()), "mAP75": float(p[:, 5].mean())}


class DetectionAP(Accumulator):
    """COCO mAP@[.5:.95] (primary ``mAP``, higher is better) of instances; per sample, the mAP of that image
    alone (NaN for an image without reference instances). A subclass implements :meth:`instances` (a raw →
    :class:`Instances`) for its modality's raw form.

    :param iou_type: ``"bbox"`` or ``"segm"`` (masks), or another name a subclass's :meth:`similarity` knows.
    :param max_dets: detections kept per image and class, highest scores first (COCO: 100).
    """

    primary = "mAP"
    higher_is_better = True
    #: overlap measures a subclass adds (its :meth:`similarity` scores them)
    extra_iou_types: tuple[str, ...] = ()

    def __init__(self, modality: str, *, iou_type: str = "bbox", max_dets: int = 100):
        if iou_type not in ("bbox", "segm", *self.extra_iou_types):
            raise ValueError(f"modality {modality!r} metrics: iou_type must be 'bbox' or 'segm', got {iou_type!r}")
        self.iou_type = iou_type
        self.max_dets = int(max_dets)
        super().__init__(modality)

    def instances(self, index: int, raw: Any, what: str) -> Instances:
        raise NotImplementedError

    def _reset(self) -> None:
        self.per_class: dict[str, tuple[list[np.ndarray], list[np.ndarray], int]] = {}

    def similarity(self, index: int, pred: Instances, ref: Instances) -> np.ndarray:
        """``(len(pred), len(ref))`` IoU of every predicted against every reference instance (box or mask IoU
        by ``iou_type``; a subclass may score another overlap, e.g. keypoint similarity)."""
        if self.iou_type == "bbox":
            if pred.boxes is None or ref.boxes is None:
                raise self.error(index, "the prediction and the reference need boxes")
            return box_iou(pred.boxes, ref.boxes)
        if pred.masks is None or ref.masks is None:
            raise self.error(index, "the prediction and the reference need masks; score them with iou_type='bbox'")
        d, g = np.asarray(pred.masks, bool), np.asarray(ref.masks, bool)
        if not len(d) or not len(g):
            return np.zeros((len(d), len(g)))
        if d.shape[1:] != g.shape[1:]:
            from .base import resize_map

            d = resize_map(d.transpose(1, 2, 0).astype(np.uint8), g.shape[1:], nearest=True)
            d = d.reshape(*g.shape[1:], -1).transpose(2, 0, 1).astype(bool)
        return mask_iou(d, g)

    def _image(self, index: int, pred: Instances, ref: Instances) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        """Per class of one image: (kept scores, matched (T, D), reference count)."""
        sim = self.similarity(index, pred, ref)
        p_labels, r_labels = np.asarray(pred.labels, object), np.asarray(ref.labels, object)
        scores = np.asarray(pred.scores, np.float64).reshape(-1)
        out = {}
        for name in dict.fromkeys([*ref.labels, *pred.labels]):
            di = np.flatnonzero(p_labels == name) if len(p_labels) else np.zeros(0, int)
            gi = np.flatnonzero(r_labels == name) if len(r_labels) else np.zeros(0, int)
            di = di[np.argsort(-scores[di], kind="mergesort")][: self.max_dets]
            out[name] = (scores[di], greedy_match(sim[np.ix_(di, gi)]), len(gi))
        return out

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = []
        for i, (p, r) in enumerate(zip(preds, refs)):
            image = self._image(i, self.instances(i, p, "prediction"), self.instances(i, r, "reference"))
            for name, (s, m, n) in image.items():
                ss, mm, nn = self.per_class.setdefault(name, ([], [], 0))
                ss.append(s)
                mm.append(m)
                self.per_class[name] = (ss, mm, nn + n)
            scores.append(ap_figures({k: ([s], [m], n) for k, (s, m, n) in image.items()})["mAP"])
        return scores

    def _compute(self) -> dict[str, float]:
        return ap_figures(self.per_class)

