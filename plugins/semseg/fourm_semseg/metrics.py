"""Metrics of ``semseg``: mIoU, pixel accuracy and mean class accuracy from the dataset's confusion matrix;
see :mod:`fourm_core.metrics.segmentation`.

Invalid reference pixels: the ignore index 255 (what the labeler and readers write for "no class"). Class ids
are 0..254 (the uint8 storage without the ignore index; mIoU counts only the classes that occur in the
references or predictions), or ``num_classes=`` when given. A prediction of another size is resized (nearest)
to the reference's. Primary: ``mIoU`` (higher is better).
"""

from __future__ import annotations

from typing import Any

from fourm_core.metrics.segmentation import SegmentationMetric

from .components import IGNORE_INDEX


def make_metric(*, spec: Any = None, **kwargs: Any) -> SegmentationMetric:
    """The ``metrics`` factory: a fresh :class:`~fourm_core.metrics.segmentation.SegmentationMetric`
    (``num_classes=`` as it takes) with the plugin's ignore index."""
    kwargs.setdefault("ignore_index", IGNORE_INDEX)
    return SegmentationMetric(spec=spec, **kwargs)
