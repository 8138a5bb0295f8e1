"""Small real metrics for the evaluation tests (the plugins' own metrics are built elsewhere): mean absolute
error of arrays and exact match of values. They follow ``fourm_registry.contracts.Metric``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np


class MeanAbsoluteError:
    """``mae``: mean absolute difference per element, averaged over samples (lower is better); ``max``: the
    largest per-sample error."""

    primary = "mae"
    higher_is_better = False

    def __init__(self, *, spec: Any = None, scale: float = 1.0):
        self.spec, self.scale = spec, float(scale)
        self.reset()

    def reset(self) -> None:
        self._scores: list[float] = []

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> list[float]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        per = [float(np.abs(np.asarray(p, np.float64) - np.asarray(r, np.float64)).mean()) / self.scale
               for p, r in zip(predictions, references)]
        self._scores.extend(per)
        return per

    def compute(self) -> dict[str, float]:
        s = np.asarray(self._scores) if self._scores else np.full(1, np.nan)
        return {"mae": float(s.mean()), "max": float(s.max())}


class ExactMatch:
    """``accuracy``: share of predictions equal to their reference (as JSON values)."""

    primary = "accuracy"
    higher_is_better = True

    def __init__(self, *, spec: Any = None):
        self.spec = spec
        self.reset()

    def reset(self) -> None:
        self._hits: list[float] = []

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> list[float]:
        per = [float(json.dumps(p, sort_keys=True) == json.dumps(r, sort_keys=True))
               for p, r in zip(predictions, references)]
        self._hits.extend(per)
        return per

    def compute(self) -> dict[str, float]:
        return {"accuracy": float(np.mean(self._hits)) if self._hits else float("nan")}

