"""Registers the ``metadata`` modality (no heavy imports here: components are referenced by string)."""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: 4M-21's length: the tokenizer keeps the first 20 'key value' chunks of a longer text (no [EOS] then)
MAX_LENGTH = 40


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="metadata",
            kind="sequence",
            vocab_size=30000,
            max_length=MAX_LENGTH,
            description="image statistics and counts as shuffled 'v1=<key> v0=<bin>' chunks (4M-21 key ids)",
            storage=StorageSpec(dtype="json"),
            labeler="fourm_metadata.components:MetadataLabeler",
            transform="fourm_metadata.components:MetadataTransform",
            serializer="fourm_metadata.components:MetadataSerializer",
            metrics="fourm_metadata.metrics:make_metric",
            visualizer="fourm_metadata.components:visualize",
            tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
            license="Apache-2.0",
        )
    )
