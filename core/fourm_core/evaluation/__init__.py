"""Evaluation of a 4M model over a dataset store: any-to-any predictions scored against the store's values.

>>> from fourm_core import evaluate
>>> res = evaluate("runs/my-4m", "data/val.zarr", inputs=["rgb"], targets=["depth"], oracle=True, out="eval/")
>>> res.metrics["targets"]["depth"]["model"]     # {figure: value}; also "oracle" and "baseline"
>>> print(res.markdown())

Each target is scored by its plugin's ``metrics`` component (:class:`fourm_registry.contracts.Metric`),
next to the tokenizer round trip of the reference (``oracle=True``: the upper bound of a perfect model) and
a trivial constant prediction (:mod:`fourm_core.evaluation.scoring`). ``fourm evaluate`` is the command.
"""

from __future__ import annotations

from .errors import EvaluationError
from .runner import EvaluationResult, evaluate

__all__ = ["EvaluationError", "EvaluationResult", "evaluate"]
