"""Errors raised by generation and the any-to-any API (defined in :mod:`fourm_core.errors`; subclasses of the
registry's FourmError, so the ``fourm`` CLI prints them as one clean line)."""

from __future__ import annotations

from fourm_registry.errors import UnknownModalityError

from ..errors import GenerationError, TokenizerMissingError

__all__ = ["GenerationError", "TokenizerMissingError", "UnknownModalityError"]
