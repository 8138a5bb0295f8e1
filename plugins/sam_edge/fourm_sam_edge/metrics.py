"""Metrics of ``sam_edge``: precision / recall / F1 of the boundary pixels with a 2-pixel tolerance, averaged
over images; see :mod:`fourm_core.metrics.edges`. Edge maps (uint8, non-zero = edge) have no invalid pixels;
a prediction of another size is resized bilinearly to the reference's. Primary: ``F1`` (higher is better).
"""

from __future__ import annotations

from typing import Any

from fourm_core.metrics.edges import EdgeMetric


def make_metric(*, spec: Any = None, **kwargs: Any) -> EdgeMetric:
    """The ``metrics`` factory: a fresh :class:`~fourm_core.metrics.edges.EdgeMetric` (``tolerance=`` pixels)."""
    return EdgeMetric(spec=spec, **kwargs)
