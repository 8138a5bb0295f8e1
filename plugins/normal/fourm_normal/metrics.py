"""Metrics of ``normal``: angular error in degrees pooled over pixels (mean, median, RMSE, share under 11.25°,
22.5°, 30°); see :mod:`fourm_core.metrics.angles`.

Raws are uint8 ``(n + 1) · 127.5``. Invalid reference pixels: those whose decoded vector is not near unit
length (outside [0.5, 1.5]: grey (127/128, 127/128, 127/128), the zero vector, and pure black or white,
what readers write where a label has no normal). A prediction of another size is resized bilinearly (on
the decoded vectors) to the reference's. Primary: ``mean_angle`` (lower is better).
"""

from __future__ import annotations

from typing import Any

from fourm_core.metrics.angles import NormalMetric


def make_metric(*, spec: Any = None, **kwargs: Any) -> NormalMetric:
    """The ``metrics`` factory: a fresh :class:`~fourm_core.metrics.angles.NormalMetric`."""
    return NormalMetric(spec=spec, **kwargs)
