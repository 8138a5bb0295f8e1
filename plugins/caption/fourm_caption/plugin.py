"""Registers the ``caption`` modality (no heavy imports here: components are referenced by string)."""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

MAX_LENGTH = 256
DEFAULT_WEIGHTS = "Salesforce/blip-image-captioning-large"


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="caption",
            kind="sequence",
            vocab_size=30000,
            max_length=MAX_LENGTH,
            description="a natural-language caption of the image (BLIP captioner); serialized as the text itself",
            storage=StorageSpec(dtype="json"),
            labeler="fourm_caption.components:CaptionLabeler",
            transform="fourm_caption.components:CaptionTransform",
            serializer="fourm_caption.components:CaptionSerializer",
            metrics="fourm_caption.metrics:make_metric",
            reader="fourm_caption.readers:CaptionReader",
            visualizer="fourm_caption.components:visualize",
            tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
            default_weights=DEFAULT_WEIGHTS,
            license="Apache-2.0",
        )
    )
