"""Metrics of ``human_pose``: COCO keypoint mAP@[.5:.95] / @.5 / @.75 by object keypoint similarity (OKS),
computed as ``pycocotools`` does for ``iouType="keypoints"`` (at most 20 persons per image, the 17 COCO
per-keypoint constants); see :mod:`fourm_core.metrics.detection` for the matching and the averaging.

OKS of a predicted and a reference person, over the reference's labeled keypoints (v > 0)::

    OKS = mean over labeled i of exp(-d_i^2 / (2 s^2 (2 sigma_i)^2))

with ``d_i`` the distance of keypoint ``i`` and ``s^2`` the reference person's area, here its box area
(COCO uses the segment area, which this raw form does not have, so scores are a little more lenient than
COCO's). Distances and areas are in pixels of ``image_size`` when the reference raw has it, else in the
normalised units (a square image). Invalid reference: a person without labeled keypoints is left out (COCO
ignores it); the predicted visibility is not used. Predictions rank by their person ``score`` (a parsed text
gives 1.0). Primary: ``mAP`` (higher is better).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.metrics.base import MetricError
from fourm_core.metrics.detection import DetectionAP, Instances

from .components import MODALITY, validate_pose

#: the per-keypoint constants of COCO's OKS (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
LABEL = "person"


def oks(pred_kps: np.ndarray, ref_kps: np.ndarray, ref_areas: np.ndarray, sigmas: np.ndarray = COCO_SIGMAS
        ) -> np.ndarray:
    """``(D, G)`` object keypoint similarity of predicted keypoints ``(D, K, >=2)`` against reference keypoints
    ``(G, K, 3)`` (visibility last) with reference areas ``(G,)``; a reference without labeled keypoints
    has similarity 0."""
    if not len(pred_kps) or not len(ref_kps):
        return np.zeros((len(pred_kps), len(ref_kps)))
    d2 = ((pred_kps[:, None, :, :2] - ref_kps[None, :, :, :2]) ** 2).sum(-1)  # (D, G, K)
    e = d2 / ((2 * sigmas) ** 2)[None, None] / (ref_areas[None, :, None] + np.spacing(1)) / 2
    labeled = ref_kps[None, :, :, 2] > 0
    n = labeled.sum(-1)
    return np.where(n > 0, (np.exp(-e) * labeled).sum(-1) / np.maximum(n, 1), 0.0)


class HumanPoseMetric(DetectionAP):
    """Keypoint mAP of human_pose raws (the module docstring)."""

    extra_iou_types = ("keypoints",)

    def __init__(self, *, spec: Any = None, max_dets: int = 20):
        super().__init__(spec.name if spec is not None else MODALITY, iou_type="keypoints", max_dets=max_dets)

    def instances(self, index: int, raw: Any, what: str) -> Instances:
        try:
            persons = validate_pose(raw)
        except ValueError as exc:
            raise MetricError(f"modality {self.modality!r} metrics, sample {index}, {what}: {exc}") from exc
        if what == "reference":
            persons = [p for p in persons if (p[2][:, 2] > 0).any()]
        size = raw.get("image_size")
        return Instances(labels=[LABEL] * len(persons), scores=np.array([p[1] for p in persons], np.float64),
                         boxes=np.array([p[0] for p in persons], np.float64).reshape(-1, 4),
                         keypoints=np.array([p[2] for p in persons], np.float64).reshape(-1, len(COCO_SIGMAS), 3),
                         image_size=tuple(size) if size else None)

    def similarity(self, index: int, pred: Instances, ref: Instances) -> np.ndarray:
        """OKS in pixels of the reference's ``image_size`` (normalised units without it)."""
        h, w = ref.image_size or (1, 1)
        scale = np.array([w, h, 1.0])
        areas = np.prod(np.clip(ref.boxes[:, 2:] - ref.boxes[:, :2], 0, None) * scale[:2], 1)
        return oks(pred.keypoints * scale, ref.keypoints * scale, areas)


def make_metric(*, spec: Any = None, **kwargs: Any) -> HumanPoseMetric:
    """The ``metrics`` factory: a fresh :class:`HumanPoseMetric`."""
    return HumanPoseMetric(spec=spec, **kwargs)
