"""Registers the ``color_palette`` modality (no heavy imports here: components are referenced by string)."""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: 4M-21 layout: ``v1=k`` then 3·k channel tokens; k ≤ 7 → at most 22 tokens (+ EOS) in max_length 23
MAX_LENGTH = 23


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="color_palette",
            kind="sequence",
            vocab_size=30000,
            max_length=MAX_LENGTH,
            description="k ≤ 7 dominant colours of the image (k-means in RGB), serialized as "
                        "'v1=k v0=R v0=G v0=B ...' (4M-21)",
            storage=StorageSpec(dtype="json"),
            labeler="fourm_color_palette.components:PaletteLabeler",
            transform="fourm_color_palette.components:PaletteTransform",
            serializer="fourm_color_palette.components:PaletteSerializer",
            metrics="fourm_color_palette.metrics:make_metric",
            visualizer="fourm_color_palette.components:visualize",
            tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
            license="Apache-2.0",
        )
    )
