"""Semantic segmentation figures from a confusion matrix: mean IoU and pixel accuracy (the protocol of
PASCAL VOC / ADE20K / COCO-Stuff, as mmsegmentation and torchmetrics compute them).

Over all pixels of all samples whose reference is not the ignore index, ``C[i, j]`` counts reference class
``i`` predicted as ``j``. Per class ``IoU = C[i, i] / (sum_j C[i, j] + sum_j C[j, i] - C[i, i])``; mIoU is the
mean over the classes that occur in the references or the predictions (union > 0). Pixel accuracy is
``trace(C) / sum(C)``; mean accuracy the mean over classes present in the references of ``C[i, i] / sum_j C[i, j]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Accumulator, as_map, resize_map


def confusion(pred: np.ndarray, ref: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """``(K, K + 1)`` confusion counts of integer maps: rows reference classes ``0..K-1``, columns predicted
    classes, the last column predictions outside ``0..K-1`` (always wrong). Reference pixels equal to
    ``ignore_index`` are left out; other references must lie in ``0..K-1``."""
    r = ref.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    keep = r != ignore_index if ignore_index is not None else np.ones_like(r, bool)
    r, p = r[keep], p[keep]
    p = np.where((p >= 0) & (p < num_classes), p, num_classes)
    return np.bincount(r * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1)).reshape(
        num_classes, num_classes + 1)


def iou_figures(conf: np.ndarray) -> dict[str, float]:
    """mIoU, pixel accuracy and mean class accuracy of a :func:`confusion` matrix (NaN when it is empty)."""
    k = conf.shape[0]
    tp = np.diag(conf[:, :k]).astype(np.float64)
    ref_count = conf.sum(1).astype(np.float64)
    pred_count = conf[:, :k].sum(0).astype(np.float64)
    union = ref_count + pred_count - tp
    total = conf.sum()
    present = union > 0
    in_ref = ref_count > 0
    return {
        "mIoU": float((tp[present] / union[present]).mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "mean_accuracy": float((tp[in_ref] / ref_count[in_ref]).mean()) if in_ref.any() else float("nan"),
    }


class SegmentationMetric(Accumulator):
    """Class-index maps (raw: integer ``(H, W, 1)``) scored by mIoU and pixel accuracy (the module docstring).
    Reference pixels equal to ``ignore_index`` are invalid (left out); a reference class ``>= num_classes``
    (other than the ignore index) is an error; a predicted class outside ``0..num_classes-1`` counts as wrong.
    A prediction of another size is resized (nearest) to the reference's. Primary: ``mIoU`` over the dataset
    (higher is better); per sample, the mIoU of that sample alone.

    :param num_classes: the class ids ``0..num_classes-1`` (default: every value but the ignore index of
        a uint8 map, 255 classes; only classes that occur count in mIoU).
    """

    primary = "mIoU"
    higher_is_better = True

    def __init__(self, *, spec: Any = None, modality: str = "semseg", num_classes: int | None = None,
                 ignore_index: int | None = 255):
        self.ignore_index = ignore_index
        self.num_classes = int(num_classes) if num_classes is not None else 255
        if self.num_classes < 1:
            raise ValueError(f"modality {modality!r} metrics: num_classes must be >= 1, got {num_classes!r}")
        super().__init__(spec.name if spec is not None else modality)

    def _reset(self) -> None:
        self.conf = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = []
        for i, (p, r) in enumerate(zip(preds, refs)):
            rm = as_map(self.modality, i, r, "reference", channels=1)
            pm = as_map(self.modality, i, p, "prediction", channels=1)
            if rm.dtype.kind == "f" or pm.dtype.kind == "f":
                raise self.error(i, "class maps must hold integer class ids, got float values; pass the "
                                    "argmax of class scores")
            pm = resize_map(pm, rm.shape[:2], nearest=True)
            bad = (rm != self.ignore_index) & ((rm < 0) | (rm >= self.num_classes))
            if bad.any():
                raise self.error(i, f"reference class {int(rm[bad].reshape(-1)[0])} is outside 0.."
                                    f"{self.num_classes - 1} and not the ignore index {self.ignore_index}; "
                                    f"pass num_classes= (or map it to the ignore index)")
            c = confusion(pm, rm, self.num_classes, self.ignore_index)
            self.conf += c
            scores.append(iou_figures(c)["mIoU"])
        return scores

    def _compute(self) -> dict[str, float]:
        return iou_figures(self.conf)
