"""Quality measures of ``color_palette`` predictions (numpy only).

Palettes are the modality's raw form ``{"colors": [[R, G, B], ...]}``. The distance between palettes ``A``
and ``B`` is the *symmetric mean nearest-colour distance*, in RGB units (0..441, the RGB cube's diagonal)::

    d(A, B) = 1/2 (mean over a in A of min over b in B |a - b|  +  mean over b in B of min over a in A |a - b|)

with ``|.|`` the Euclidean norm. It is 0 for palettes with the same colours (whatever their order and
repetitions), symmetric, and does not need both palettes to have the same number of colours.

:func:`make_metric` is the modality's ``metrics`` component: per sample ``distance`` (primary, lower is
better) and ``count_error`` (``|k_pred - k_ref|``, the difference in the number of colours), averaged over
samples; an empty predicted palette scores the largest distance, 441 (the RGB cube's diagonal). Palettes
have no invalid value; a reference without colours is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.metrics.base import MeanOverSamples, MetricError

__all__ = ["palette_distance", "medoid_palette", "PaletteMetric", "make_metric"]
MODALITY = "color_palette"


def _colors(palette: Any, where: str) -> np.ndarray:
    if not isinstance(palette, dict) or "colors" not in palette:
        raise ValueError(f"modality 'color_palette' metrics ({where}): a palette is a dict "
                         f"{{'colors': [[R, G, B], ...]}}, got {palette!r:.80}")
    return np.asarray(palette["colors"], dtype=np.float64).reshape(-1, 3)


def palette_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Symmetric mean nearest-colour distance between palettes ``a`` and ``b`` (RGB units, 0..441; the module
    docstring defines it)."""
    return _distance(_colors(a, "first palette"), _colors(b, "second palette"))


def _distance(pa: np.ndarray, pb: np.ndarray) -> float:
    d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
    return float(0.5 * (d.min(1).mean() + d.min(0).mean()))


def medoid_palette(palettes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The palette of ``palettes`` with the smallest summed :func:`palette_distance` to all of them (the first
    such one on ties): the best single fixed guess among them, a baseline for predicted palettes."""
    if not palettes:
        raise ValueError("modality 'color_palette' metrics: medoid_palette needs at least one palette")
    return min(palettes, key=lambda p: sum(palette_distance(p, q) for q in palettes))


class PaletteMetric(MeanOverSamples):
    """Palettes scored by :func:`palette_distance` and the colour-count error (the module docstring)."""

    primary = "distance"
    higher_is_better = False

    def __init__(self, *, spec: Any = None):
        super().__init__(spec.name if spec is not None else MODALITY)

    def _figures(self, index: int, pred: Any, ref: Any) -> dict[str, float]:
        try:
            pa, pb = _colors(pred, "prediction"), _colors(ref, "reference")
        except ValueError as exc:
            raise MetricError(f"sample {index}: {exc}") from exc
        if not len(pb):
            raise self.error(index, "the reference palette has no colours")
        if not len(pa):
            return {"distance": float(np.sqrt(3) * 255), "count_error": float(len(pb))}
        return {"distance": _distance(pa, pb), "count_error": float(abs(len(pa) - len(pb)))}


def make_metric(*, spec: Any = None, **kwargs: Any) -> PaletteMetric:
    """The ``metrics`` factory: a fresh :class:`PaletteMetric`."""
    return PaletteMetric(spec=spec, **kwargs)
