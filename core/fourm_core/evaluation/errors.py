"""The error of the evaluation (a leaf module)."""

from __future__ import annotations

from fourm_registry.errors import FourmError


class EvaluationError(FourmError, ValueError):
    """An evaluation cannot run as asked (a target without metrics, a store without references, an output
    directory of another run); the message names the modality, file or option and the fix."""


__all__ = ["EvaluationError"]
