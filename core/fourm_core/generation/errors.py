"""Errors raised by generation and the any-to-any API (subclasses of the registry's FourmError, so the
``fourm`` CLI prints them as one clean line)."""

from __future__ import annotations

from fourm_registry.errors import FourmError, UnknownModalityError


class GenerationError(FourmError, ValueError):
    """A generation request is invalid (bad target, bad input, bad schedule); the message names the fix."""


class TokenizerMissingError(FourmError, LookupError):
    """A modality has no tokenizer (codec) available, so raw data cannot be encoded or decoded."""


__all__ = ["GenerationError", "TokenizerMissingError", "UnknownModalityError"]
