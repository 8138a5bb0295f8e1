"""Metrics of ``det``: COCO box mAP@[.5:.95], mAP@.5 and mAP@.75, computed as ``pycocotools`` does (per class,
at most 100 detections per image); see :mod:`fourm_core.metrics.detection`.

Predictions are det raws with ``scores`` (a parsed text gives every box score 1.0, so its boxes rank in text
order). Reference boxes with a score below ``reference_threshold`` (0.6, the serializer's threshold: the
boxes a text can carry) are left out; real labels have score 1. Classes are matched by name (as words:
``traffic_light`` = ``traffic light``). Boxes are normalised xyxy, so a prediction at another size needs no
resize. A reference without boxes has no per-sample AP (NaN); its predicted boxes still count as false
positives of their classes in the dataset mAP. Primary: ``mAP`` (higher is better).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.metrics.base import MetricError
from fourm_core.metrics.detection import DetectionAP, Instances

from .components import MODALITY, validate_det


class DetMetric(DetectionAP):
    """Box mAP of det raws (the module docstring); ``max_dets`` as :class:`DetectionAP`."""

    def __init__(self, *, spec: Any = None, reference_threshold: float = 0.6, max_dets: int = 100):
        self.reference_threshold = float(reference_threshold)
        super().__init__(spec.name if spec is not None else MODALITY, iou_type="bbox", max_dets=max_dets)

    def instances(self, index: int, raw: Any, what: str) -> Instances:
        try:
            boxes, words, scores = validate_det(raw, self.modality)
        except ValueError as exc:
            raise MetricError(f"modality {self.modality!r} metrics, sample {index}, {what}: {exc}") from exc
        if what == "reference":
            keep = scores >= self.reference_threshold
            boxes, scores = boxes[keep], scores[keep]
            words = [w for w, k in zip(words, keep) if k]
        return Instances(labels=words, scores=np.asarray(scores, np.float64), boxes=boxes)


def make_metric(*, spec: Any = None, **kwargs: Any) -> DetMetric:
    """The ``metrics`` factory: a fresh :class:`DetMetric`."""
    return DetMetric(spec=spec, **kwargs)
