"""Registers ``sam_instance`` (sequence kind): SAM instance masks, serialized per query point.

No torch import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

DEFAULT_WEIGHTS = "facebook/sam-vit-base"
#: 4M-21's budget for this modality (a longer text is cut there, as 4M-21's masking does)
MAX_LENGTH = 290
_C = "fourm_sam_instance.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="sam_instance",
        kind="sequence",
        vocab_size=30000,
        max_length=MAX_LENGTH,
        description="SAM instances: per query point 'point v0=y v1=x' then 'none' or, per instance containing it, "
                    "'polygon' + 4 box tokens + 16 mask-tokenizer ids (as v0=/v1= tokens); pixels of the 224 crop",
        storage=StorageSpec(dtype="json"),
        labeler=f"{_C}:SamInstanceLabeler",
        transform=f"{_C}:SamInstanceTransform",
        metrics="fourm_sam_instance.metrics:make_metric",
        serializer=ComponentRef(target=f"{_C}:make_serializer", context=("tokenizer_dir",)),
        visualizer=f"{_C}:visualize",
        tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
        special_tokens=("point", "polygon", "none"),
        requires=("rgb",),
        license="Apache-2.0 (SAM weights)",
        default_weights=DEFAULT_WEIGHTS,
    ))
