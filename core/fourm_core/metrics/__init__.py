"""Scoring predicted raws against reference raws: the building blocks the plugins' ``metrics`` components use.

A modality declares its metric as a component (``ModalitySpec.metrics``); its factory receives ``spec=`` and
returns a fresh :class:`fourm_registry.Metric` accumulator. :func:`build_metric` builds one for a spec (None
when the modality declares none), :func:`metrics_for` one per named modality.

The families live in their own modules (imported lazily, so that ``import fourm_core.metrics`` stays light):

* :mod:`~fourm_core.metrics.dense` — dense regression (depth): least-squares scale-and-shift alignment, δ
  thresholds, AbsRel, RMSE; resizing a prediction to the reference's size.
* :mod:`~fourm_core.metrics.angles` — surface normals: angular error statistics.
* :mod:`~fourm_core.metrics.segmentation` — confusion-matrix mIoU and pixel accuracy.
* :mod:`~fourm_core.metrics.detection` — COCO-style mean average precision (boxes, masks, or a subclass's
  overlap such as keypoint similarity).
* :mod:`~fourm_core.metrics.captions` — BLEU-4 and CIDEr-D.
* :mod:`~fourm_core.metrics.retrieval` — recall@k of global embeddings.
* :mod:`~fourm_core.metrics.edges` — edge-map F1 with a pixel tolerance.
* :mod:`~fourm_core.metrics.base` — the accumulator base class the families share.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fourm_registry import Metric, ModalitySet, ModalitySpec


def build_metric(spec: ModalitySpec) -> Metric | None:
    """A fresh metric accumulator for ``spec`` (``spec.metrics.build()``: the factory gets ``spec=``), or None
    when the modality declares no metrics component."""
    if spec.metrics is None:
        return None
    return spec.metrics.build()


def metrics_for(modalities: Iterable[str | ModalitySpec], registry: ModalitySet | None = None
                ) -> dict[str, Metric]:
    """One fresh accumulator per modality that declares metrics, keyed by modality name (those that declare
    none are left out). ``modalities`` are names or aliases (looked up in ``registry``, the installed plugins'
    modalities when None; an unknown name raises :class:`~fourm_registry.UnknownModalityError`) or specs."""
    from fourm_registry import ModalitySpec

    out: dict[str, Metric] = {}
    for item in modalities:
        if isinstance(item, ModalitySpec):
            spec = item
        else:
            if registry is None:
                from fourm_registry import get_modalities

                registry = get_modalities()
            spec = registry[item]
        metric = build_metric(spec)
        if metric is not None:
            out[spec.name] = metric
    return out


__all__ = ["build_metric", "metrics_for"]
