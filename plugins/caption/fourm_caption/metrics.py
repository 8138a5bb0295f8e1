"""Metrics of ``caption``: BLEU-1..4 and CIDEr-D over the corpus, as the COCO caption evaluation computes them
(pure Python, no Java); see :mod:`fourm_core.metrics.captions`.

A prediction is a caption ``str``; a reference a ``str`` or a list of ``str`` (several references of one
image). Invalid reference: one without words (the empty caption): the sample is left out (score NaN).
Primary: ``BLEU-4``
(higher is better; CIDEr depends on the whole corpus, so it is reported by ``compute()`` only).
"""

from __future__ import annotations

from typing import Any

from fourm_core.metrics.captions import CaptionMetric


def make_metric(*, spec: Any = None, **kwargs: Any) -> CaptionMetric:
    """The ``metrics`` factory: a fresh :class:`~fourm_core.metrics.captions.CaptionMetric`."""
    return CaptionMetric(spec=spec, **kwargs)
