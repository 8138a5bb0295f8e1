"""Exceptions raised by the registry. Every message names the thing, the place and the fix."""

from __future__ import annotations


class FourmError(Exception):
    """Base class of every error fourm raises on purpose."""


class PluginLoadError(FourmError):
    """An entry point of the ``fourm`` group failed to import or register."""


class PluginValidationError(FourmError):
    """A plugin implements a hook that does not exist (a misspelt hook) or has a bad signature."""


class SpecError(FourmError, ValueError):
    """A ``ModalitySpec`` / ``StorageSpec`` is invalid."""


class DuplicateModalityError(FourmError):
    """Two plugins registered the same modality name, alias or id."""


class UnknownModalityError(FourmError, KeyError):
    """A modality name, alias or id is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ComponentError(FourmError):
    """A lazily referenced component (tokenizer, labeler, ...) could not be loaded."""
