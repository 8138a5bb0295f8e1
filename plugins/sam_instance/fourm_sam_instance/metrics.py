"""Metrics of ``sam_instance``: class-agnostic COCO mAP@[.5:.95] / @.5 / @.75 of the instances (as
``pycocotools`` computes it, at most 100 instances per image); see :mod:`fourm_core.metrics.detection`.

Both raw forms score: the stored form (``{"size", "instances": [{"box", "rle", "score"?}]}``) and the points
form that a parsed text gives (``{"points": [{"xy", "instances": [{"box", "tokens"}]}]}``, whose distinct
instances are taken once each). Boxes are normalised xyxy in both. ``mAP`` / ``mAP50`` / ``mAP75`` are box
AP (every pair has boxes); where prediction and reference are both stored form, mask AP is added as
``mask_mAP`` / ``mask_mAP50`` / ``mask_mAP75`` over those samples (a predicted mask of another size is
resized, nearest, to the reference's), with ``mask_samples`` their number. An instance without ``score``
scores 1.0 (ranked in raw order). Instances have no invalid value. Primary: ``mAP`` (higher is better).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.metrics.base import Accumulator, MetricError
from fourm_core.metrics.detection import DetectionAP, Instances

from .masks import MODALITY, check_raw, decode_instances

LABEL = "object"


def _is_points(raw: Any) -> bool:
    return isinstance(raw, dict) and "points" in raw


def sam_instances(modality: str, index: int, raw: Any, what: str, with_masks: bool) -> Instances:
    """The instances of a stored- or points-form raw (masks only for the stored form, when asked)."""
    try:
        if _is_points(raw):
            seen: dict[tuple, list[float]] = {}
            for group in raw["points"]:
                for inst in group["instances"]:
                    seen.setdefault((tuple(inst["box"]), tuple(inst.get("tokens", ()))), list(inst["box"]))
            boxes = np.asarray(list(seen.values()), np.float64).reshape(-1, 4)
            return Instances(labels=[LABEL] * len(boxes), scores=np.ones(len(boxes)), boxes=boxes)
        check_raw(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise MetricError(f"modality {modality!r} metrics, sample {index}, {what}: not a stored or points-form "
                          f"sam_instance raw ({exc})") from exc
    inst = raw["instances"]
    boxes = np.asarray([i["box"] for i in inst], np.float64).reshape(-1, 4)
    scores = np.asarray([float(i.get("score", 1.0)) for i in inst], np.float64)
    return Instances(labels=[LABEL] * len(inst), scores=scores, boxes=boxes,
                     masks=decode_instances(raw) if with_masks else None)


class _SamAP(DetectionAP):
    def instances(self, index: int, raw: Any, what: str) -> Instances:
        return sam_instances(self.modality, index, raw, what, with_masks=self.iou_type == "segm")


class SamInstanceMetric(Accumulator):
    """Box mAP of every pair plus mask mAP of the stored-form pairs (the module docstring)."""

    primary = "mAP"
    higher_is_better = True

    def __init__(self, *, spec: Any = None, max_dets: int = 100):
        name = spec.name if spec is not None else MODALITY
        self.boxes = _SamAP(name, iou_type="bbox", max_dets=max_dets)
        self.masks = _SamAP(name, iou_type="segm", max_dets=max_dets)
        super().__init__(name)

    def _reset(self) -> None:
        self.boxes.reset()
        self.masks.reset()

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = self.boxes.update(preds, refs)
        stored = [(p, r) for p, r in zip(preds, refs) if not _is_points(p) and not _is_points(r)]
        if stored:
            self.masks.update([p for p, _ in stored], [r for _, r in stored])
        return scores

    def _compute(self) -> dict[str, float]:
        out = self.boxes.compute()
        if self.masks.count:
            out.update({f"mask_{k}": v for k, v in self.masks.compute().items()})
        out["mask_samples"] = float(self.masks.count)
        return out


def make_metric(*, spec: Any = None, **kwargs: Any) -> SamInstanceMetric:
    """The ``metrics`` factory: a fresh :class:`SamInstanceMetric`."""
    return SamInstanceMetric(spec=spec, **kwargs)
