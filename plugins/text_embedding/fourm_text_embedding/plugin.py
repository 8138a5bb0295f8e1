"""Registers the ``text_embedding`` modality (no heavy imports here: components are referenced by string)."""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: 4M-21's ``t5_caption``: up to 77 T5-XXL encoder states of 4096 dims
MAX_LENGTH = 77
EMBED_DIM = 4096
DEFAULT_WEIGHTS = "google/t5-v1_1-xxl"


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="text_embedding",
            kind="embedding_sequence",
            max_length=MAX_LENGTH,
            embed_dim=EMBED_DIM,
            aliases=("t5_caption",),
            description="T5 encoder states of the caption (L=77, D=4096, zero-padded); encoder-only input that the "
                        "model projects linearly",
            storage=StorageSpec(dtype="float16", shape=(MAX_LENGTH, EMBED_DIM)),
            requires=("caption",),
            labeler="fourm_text_embedding.components:TextEmbeddingLabeler",
            transform="fourm_text_embedding.components:TextEmbeddingTransform",
            visualizer="fourm_text_embedding.components:visualize",
            default_weights=DEFAULT_WEIGHTS,
            license="Apache-2.0",
        )
    )
