"""A plain-text serializer for sequence modalities synthesized from foreign checkpoints.

Reference 4M checkpoints name sequence modalities (``caption``, ``det``, ``tok_pose``, ...) for which no fourm
plugin may be installed. The parity verifier and :func:`fourm_core.compat.ml4m.load_ml4m_checkpoint` then
synthesize a generic :class:`fourm_registry.ModalitySpec`; a sequence spec needs a serializer, and this one
treats the raw value as the already-serialized text of shared-vocabulary tokens.
"""

from __future__ import annotations


class PlainTextSerializer:
    """``to_text(raw) -> str`` / ``from_text(str) -> raw`` where the raw value is the text itself."""

    def __init__(self, modality: str = "text"):
        self.modality = modality

    def to_text(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"modality {self.modality!r}: plain-text serializer takes a str, got {type(raw).__name__}")
        return raw

    def from_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise ValueError(f"modality {self.modality!r}: plain-text serializer takes a str, got {type(text).__name__}")
        return text
