"""Metrics of ``metadata``: how many statistics a prediction gets into the reference's bin, and their errors.

Per sample, over the keys of the reference: ``bin_accuracy`` is the share of keys whose predicted value falls
in the same serialization bin as the reference value (:func:`~fourm_metadata.components.to_bin`: the
resolution the modality's text carries; a key missing from the prediction counts as wrong), ``missing`` the
share of keys the prediction lacks. ``abs_error/<key>`` is the mean absolute error of each key over the
samples where both have it, in the key's own unit; ``norm_abs_error`` the mean over keys of that error
divided by the key's range (its bins' span: 0..999 for counts, 32 · 999 px for image sizes, [0, 1] for
watermark, 1..10 for aesthetic, the float range of the others). Keys the prediction has beyond the
reference are ignored. Metadata has no invalid value; an unknown key is an error. Primary: ``bin_accuracy``
averaged over samples (higher is better); a sample whose reference is empty has none (NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.metrics.base import Accumulator

from .components import FLOAT_BINS, IMAGE_DIM_BIN, IMAGE_DIM_KEYS, INT_KEYS, KEYS, MODALITY, VALUE_MAX, to_bin

_RANGES = {"watermark_score": 1.0, "aesthetic_score": 9.0}


def key_range(key: str) -> float:
    """The span of values of ``key`` its bins cover (the unit of ``norm_abs_error``)."""
    if key in IMAGE_DIM_KEYS:
        return float(IMAGE_DIM_BIN * VALUE_MAX)
    if key in INT_KEYS:
        return float(VALUE_MAX)
    if key in _RANGES:
        return _RANGES[key]
    vmin, vmax, _ = FLOAT_BINS[key]
    return vmax - vmin


class MetadataMetric(Accumulator):
    """Metadata dicts scored by bin accuracy and per-key errors (the module docstring)."""

    primary = "bin_accuracy"
    higher_is_better = True

    def __init__(self, *, spec: Any = None):
        super().__init__(spec.name if spec is not None else MODALITY)

    def _reset(self) -> None:
        self.acc_sum, self.acc_n, self.missing_sum = 0.0, 0, 0.0
        self.err_sum: dict[str, float] = {}
        self.err_n: dict[str, int] = {}

    def _dict(self, index: int, raw: Any, what: str) -> dict[str, float]:
        if not isinstance(raw, dict):
            raise self.error(index, f"the {what} must be a dict of statistics, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            raise self.error(index, f"the {what} has unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
                                    f"{', '.join(KEYS)}")
        try:
            for k, v in raw.items():
                to_bin(k, v)  # raises on a value that is not a finite number
            return {k: float(v) for k, v in raw.items()}
        except (TypeError, ValueError) as exc:
            raise self.error(index, f"the {what}: {exc}") from exc

    def _update(self, preds: list[Any], refs: list[Any]) -> list[float]:
        scores = []
        for i, (p, r) in enumerate(zip(preds, refs)):
            pd, rd = self._dict(i, p, "prediction"), self._dict(i, r, "reference")
            if not rd:
                scores.append(float("nan"))
                continue
            hits = [k in pd and to_bin(k, pd[k]) == to_bin(k, v) for k, v in rd.items()]
            acc = float(np.mean(hits))
            self.acc_sum += acc
            self.acc_n += 1
            self.missing_sum += float(np.mean([k not in pd for k in rd]))
            for k, v in rd.items():
                if k in pd:
                    self.err_sum[k] = self.err_sum.get(k, 0.0) + abs(pd[k] - v)
                    self.err_n[k] = self.err_n.get(k, 0) + 1
            scores.append(acc)
        return scores

    def _compute(self) -> dict[str, float]:
        if not self.acc_n:
            return {"bin_accuracy": float("nan")}
        errors = {k: self.err_sum[k] / self.err_n[k] for k in self.err_sum}
        out = {"bin_accuracy": self.acc_sum / self.acc_n, "missing": self.missing_sum / self.acc_n}
        if errors:
            out["norm_abs_error"] = float(np.mean([e / key_range(k) for k, e in errors.items()]))
        out.update({f"abs_error/{k}": e for k, e in sorted(errors.items())})
        return out


def make_metric(*, spec: Any = None, **kwargs: Any) -> MetadataMetric:
    """The ``metrics`` factory: a fresh :class:`MetadataMetric`."""
    return MetadataMetric(spec=spec, **kwargs)
