"""Targets of an evaluation: where their references live, their metric, and the trivial baseline of each kind.

A target is scored at the resolution the model decodes it: an image-like reference is centre-cropped to a
square and resized to the target's codec size by the reference modality's own transform, exactly as the
pipeline prepares an image input. Sequence and vector references are scored as stored.

Trivial baselines (one fixed prediction for every sample, computed from the references being scored, so it
is the best a constant predictor of that kind can do on this set):

* floating-point arrays (depth, normals, embeddings): the per-element mean of the references;
* integer arrays of one channel (class maps, edges, instance ids): the most frequent value over all pixels
  (the storage's fill value, an "ignore" label, excluded), everywhere;
* integer arrays of several channels (photos): the per-element mean, rounded;
* anything else (captions, boxes, JSON records): the reference value that scores best as a constant
  prediction under the target's own primary figure, among the :data:`CANDIDATES` most frequent ones (the
  most frequent value when no metric is given).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from fourm_registry import ModalitySpec
from fourm_registry.contracts import Metric, missing_members

from ..kinds import adapter_for
from .errors import EvaluationError
from .persist import jsonable


def build_metric(spec: ModalitySpec) -> Metric | None:
    """A fresh metric accumulator of ``spec`` (its plugin's ``metrics`` component), or None."""
    try:
        from ..metrics import build_metric as registry_metric  # the core's builder, where installed
    except ImportError:
        registry_metric = None
    if registry_metric is not None:
        return registry_metric(spec)
    return spec.metrics.build() if spec.metrics is not None else None


@attrs.frozen(kw_only=True)
class Target:
    """One evaluated target: ``name`` (the model's modality), ``reference`` (the store modality that holds
    its ground truth, e.g. ``rgb`` for ``tok_rgb``), their specs, and the size it is scored at (image-like)."""

    name: str
    spec: ModalitySpec
    reference: str
    reference_spec: ModalitySpec
    size: tuple[int, int] | None

    def metric(self) -> Metric:
        """A fresh accumulator: the target's metrics, else those of its reference modality."""
        for spec in dict.fromkeys((self.spec, self.reference_spec)):
            metric = build_metric(spec)
            if metric is not None:
                missing = missing_members(metric, Metric)
                if missing:
                    raise EvaluationError(
                        f"the metrics of modality {spec.name!r} (plugin {spec.plugin or '?'}) lack {missing}; "
                        f"fix the plugin's metrics component (it must follow fourm_registry.contracts.Metric)")
                return metric
        plugins = " / ".join(dict.fromkeys(s.plugin or "?" for s in (self.spec, self.reference_spec)))
        raise EvaluationError(
            f"modality {self.name!r} has no metrics: plugin {plugins} declares no `metrics` component; add one to "
            f"its ModalitySpec (a factory of a fourm_registry.contracts.Metric) to evaluate {self.name!r}")

    def prepare(self, pipe: Any, raws: Sequence[Any]) -> list[Any]:
        """References as scored: image-like ones cropped and resized to ``size``."""
        if self.size is None:
            return list(raws)
        return [pipe.square_resize(self.reference_spec, np.asarray(r), self.size) for r in raws]


def make_target(pipe: Any, name: str, registry: Any) -> Target:
    """The :class:`Target` of a user's target name (an alias, or ``rgb`` for its tokenized twin)."""
    canonical = pipe.resolve(name, as_target=True)
    spec = pipe.modalities[canonical]
    ref = spec.source or spec.name
    if ref in pipe.modalities:
        ref_spec = pipe.modalities[ref]
    elif registry is not None and ref in registry:
        ref_spec = registry[ref]
    else:
        ref_spec = spec
    size = None
    if adapter_for(spec).image_like:
        size = tuple(pipe.codec_size(spec, pipe.codec(canonical)))
    return Target(name=canonical, spec=spec, reference=ref, reference_spec=ref_spec, size=size)


# -- baselines ----------------------------------------------------------------------------------------------
#: how many distinct reference values a JSON / text baseline chooses from (the most frequent first)
CANDIDATES = 32


class Baseline:
    """The trivial constant prediction of one target (see the module docstring): :meth:`add` references,
    then :attr:`value` and :attr:`description`. ``metric``: a factory of fresh accumulators of the target's
    metric, which picks the JSON / text baseline among the candidates."""

    def __init__(self, spec: ModalitySpec, metric: Callable[[], Metric] | None = None):
        self.spec, self._metric = spec, metric
        self._refs: list[Any] = []
        self._sum: np.ndarray | None = None
        self._like: np.ndarray | None = None
        self._n = 0
        self._values: Counter[Any] = Counter()
        self._json: Counter[str] = Counter()
        self._first: dict[str, Any] = {}
        self.description = "no references"

    def add(self, refs: Sequence[Any]) -> None:
        arrays = [r for r in refs if isinstance(r, np.ndarray) and r.dtype.kind in "biuf"]
        if arrays and len(arrays) == len(refs) and len({a.shape for a in arrays}) == 1:
            self._add_arrays(np.stack(arrays))
            return
        for r in refs:
            key = json.dumps(jsonable(r), sort_keys=True)
            self._json[key] += 1
            self._first.setdefault(key, r)
        self._refs.extend(refs)

    def _add_arrays(self, block: np.ndarray) -> None:
        if self._like is None:
            self._like = block[0]
        elif block.shape[1:] != self._like.shape:
            raise EvaluationError(f"target {self.spec.name!r}: references of shapes {self._like.shape} and "
                                  f"{block.shape[1:]} cannot share one baseline")
        if self._is_labels:
            values, counts = np.unique(block, return_counts=True)
            fill = self.spec.storage.fill_value if self.spec.storage is not None else None
            self._values.update({v.item(): int(c) for v, c in zip(values, counts) if fill is None or v != fill})
        else:
            total = block.astype(np.float64).sum(axis=0)
            self._sum = total if self._sum is None else self._sum + total
        self._n += len(block)

    @property
    def _is_labels(self) -> bool:
        like = self._like
        return like is not None and like.dtype.kind in "biu" and (like.ndim < 3 or like.shape[-1] == 1)

    @property
    def value(self) -> Any:
        """The constant prediction (None when no reference was added)."""
        like = self._like
        if like is not None and self._is_labels:
            value = max(self._values.items(), key=lambda kv: kv[1])[0] if self._values else 0
            self.description = f"the most frequent value ({value}) everywhere"
            return np.full_like(like, value)
        if like is not None and self._sum is not None:
            mean = self._sum / max(self._n, 1)
            if like.dtype.kind in "biu":
                info = np.iinfo(like.dtype)
                mean = np.clip(np.rint(mean), info.min, info.max)
            self.description = "the per-element mean of the references"
            return mean.astype(like.dtype)
        if self._json:
            return self._best_reference()
        return None

    def _best_reference(self) -> Any:
        common = self._json.most_common(CANDIDATES)  # ties keep the order of first appearance
        total = sum(self._json.values())
        key, count = common[0]
        best, best_score = self._first[key], None
        if self._metric is not None and len(common) > 1:
            for key, _ in common:
                metric = self._metric()
                metric.update([self._first[key]] * len(self._refs), self._refs)
                score = float(metric.compute()[metric.primary])
                better = best_score is None or (score > best_score if metric.higher_is_better else score < best_score)
                if np.isfinite(score) and better:
                    best, best_score, count = self._first[key], score, self._json[key]
            self.description = (f"the reference that scores best as a constant prediction, among the "
                                f"{len(common)} most frequent values (it occurs {count} times in {total})")
        else:
            self.description = f"the most frequent reference (it occurs {count} times in {total})"
        return best


def ranked(scores: np.ndarray, higher_is_better: bool) -> dict[str, int]:
    """Indices (into ``scores``) of the best, median and worst finite scores."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return {}
    key = -scores[finite] if higher_is_better else scores[finite]
    order = finite[np.argsort(key, kind="stable")]  # ties: the lower index first
    return {"best": int(order[0]), "median": int(order[len(order) // 2]), "worst": int(order[-1])}
