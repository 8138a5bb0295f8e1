"""Metrics of ``depth``: δ1/δ2/δ3, AbsRel and RMSE after least-squares scale-and-shift alignment (relative
depth is known only up to an affine map), averaged over images; see :mod:`fourm_core.metrics.dense`.

Invalid reference pixels: NaN (or ±inf), what a reader writes where a label has no depth; references at or
below ``min_depth`` (1e-3) are left out too (they would make the ratios infinite: in a per-image normalised
map that is the nearest clipped percentile). A prediction of another size is resized bilinearly to the
reference's. Primary: ``delta1`` (higher is better).
"""

from __future__ import annotations

from typing import Any

from fourm_core.metrics.dense import DepthMetric


def make_metric(*, spec: Any = None, **kwargs: Any) -> DepthMetric:
    """The ``metrics`` factory: a fresh :class:`~fourm_core.metrics.dense.DepthMetric` (``min_depth=``,
    ``align=`` as it takes)."""
    return DepthMetric(spec=spec, **kwargs)
