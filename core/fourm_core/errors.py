"""Errors of fourm_core that several layers raise (a leaf module: it imports nothing of fourm_core).

They subclass the registry's ``FourmError`` where the ``fourm`` CLI should print them as one clean line, and
``ValueError`` / ``LookupError`` so that callers can catch them by their nature.
"""

from __future__ import annotations

from fourm_registry.errors import FourmError


class GenerationError(FourmError, ValueError):
    """A generation request is invalid (bad target, bad input, bad schedule); the message names the fix."""


class TokenizerMissingError(FourmError, LookupError):
    """A modality has no tokenizer (codec) available, so raw data cannot be encoded or decoded."""


class ModDictError(ValueError):
    """A mod_dict entry has a missing key, a wrong shape or dtype, or out-of-range token ids."""


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read, or matched to the installed plugins."""


__all__ = ["CheckpointError", "GenerationError", "ModDictError", "TokenizerMissingError"]
