"""The accumulator base the metric families share, and checks of their inputs.

Every metric follows :class:`fourm_registry.Metric`: ``update(predictions, references)`` takes two equally long
lists of raws and returns the ``primary`` figure of each sample; ``compute()`` gives every figure over all
samples seen so far; ``reset()`` empties the totals. Bad input raises :class:`MetricError` naming the modality,
the sample and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fourm_registry import FourmError


class MetricError(FourmError, ValueError):
    """A prediction or reference cannot be scored (wrong form, shape or value); the message names the modality,
    the sample and the fix."""


class Accumulator:
    """Base of the metrics: checks the pairs, counts the samples, keeps ``modality`` for messages.

    A subclass sets :attr:`primary` and :attr:`higher_is_better`, and implements :meth:`_update` (the scores
    of one batch, adding to its totals), :meth:`_compute` and :meth:`_reset`."""

    primary: str = ""
    higher_is_better: bool = True

    def __init__(self, modality: str):
        self.modality = modality
        self.count = 0
        self._reset()

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> list[float]:
        preds, refs = list(predictions), list(references)
        if len(preds) != len(refs):
            raise MetricError(f"modality {self.modality!r} metrics: {len(preds)} predictions but {len(refs)} "
                              f"references; pass one prediction per reference")
        if not preds:
            return []
        scores = [float(s) for s in self._update(preds, refs)]
        self.count += len(preds)
        return scores

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise MetricError(f"modality {self.modality!r} metrics: no samples scored yet; call update() first")
        return {k: float(v) for k, v in self._compute().items()}

    def reset(self) -> None:
        self.count = 0
        self._reset()

    def error(self, index: int, what: str) -> MetricError:
        """A :class:`MetricError` about sample ``index`` of the current batch."""
        return MetricError(f"modality {self.modality!r} metrics, sample {index}: {what}")

    # -- what a subclass implements ------------------------------------------------------------------
    def _update(self, preds: list[Any], refs: list[Any]) -> Sequence[float]:
        raise NotImplementedError

    def _compute(self) -> Mapping[str, float]:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError


class MeanOverSamples(Accumulator):
    """Figures that are per-sample values averaged over the samples: a subclass implements :meth:`_figures`
    (``{name: value}`` of one pair, ``primary`` among them; NaN where a figure is undefined for that sample,
    left out of its mean)."""

    def _reset(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def _figures(self, index: int, pred: Any, ref: Any) -> Mapping[str, float]:
        raise NotImplementedError

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = []
        for i, (p, r) in enumerate(zip(preds, refs)):
            figures = self._figures(i, p, r)
            for name, value in figures.items():
                if np.isfinite(value):
                    self._sums[name] = self._sums.get(name, 0.0) + float(value)
                    self._counts[name] = self._counts.get(name, 0) + 1
            scores.append(float(figures[self.primary]))
        return scores

    def _compute(self) -> dict[str, float]:
        out = {name: self._sums[name] / self._counts[name] for name in self._sums}
        out.setdefault(self.primary, float("nan"))
        return out


def as_map(modality: str, index: int, raw: Any, what: str, channels: int | None = None) -> np.ndarray:
    """A raw pixel map as an ``(H, W, C)`` numpy array (a 2-D map gets ``C = 1``); :class:`MetricError` naming
    the modality, the sample and ``what`` (``"prediction"``/``"reference"``) for anything else."""
    try:
        a = np.asarray(raw)
    except Exception as exc:  # noqa: BLE001 - any unconvertible object
        raise MetricError(f"modality {modality!r} metrics, sample {index}: the {what} is not an array "
                          f"({type(raw).__name__}: {exc})") from exc
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.dtype.kind not in "biuf" or (channels is not None and a.shape[-1] != channels):
        want = f"(H, W, {channels})" if channels else "(H, W, C)"
        raise MetricError(f"modality {modality!r} metrics, sample {index}: the {what} must be a numeric {want} "
                          f"map (the modality's storage form), got {a.dtype} {a.shape}")
    return a


def resize_map(a: np.ndarray, hw: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """``a`` (H, W, C) resized to ``hw`` = (H', W'): bilinear (half-pixel centres, as OpenCV and
    ``torch.nn.functional.interpolate(align_corners=False)``) or nearest for class maps; as is when the size
    already matches. Float maps are resized in float32, integer maps keep their dtype."""
    if a.shape[:2] == tuple(hw):
        return a
    import cv2

    src = a if a.dtype in (np.float32, np.uint8, np.uint16) else a.astype(np.float32)
    out = cv2.resize(src, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_NEAREST_EXACT if nearest else cv2.INTER_LINEAR)
    return out.reshape(int(hw[0]), int(hw[1]), a.shape[-1])
