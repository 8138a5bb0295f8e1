"""Registers the ``det`` modality (no heavy imports here: components are referenced by string)."""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

from .classes import COCO_CLASS_TOKENS

MAX_LENGTH = 256
DEFAULT_WEIGHTS = "facebook/detr-resnet-50"


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="det",
            kind="sequence",
            vocab_size=30000,
            max_length=MAX_LENGTH,
            description="object boxes: per box 'v0=x0 v1=y0 v2=x1 v3=y1 <class>' (round(v*999)), ordered by the "
                        "distance of (x0, y0) to the origin, scores below 0.6 dropped",
            storage=StorageSpec(dtype="json"),
            labeler="fourm_det.components:DetectionLabeler",
            transform=ComponentRef(target="fourm_det.components:DetectionTransform", context=("raw_size",)),
            serializer="fourm_det.components:DetectionSerializer",
            metrics="fourm_det.metrics:make_metric",
            reader="fourm_det.readers:DetectionReader",
            visualizer="fourm_det.components:visualize",
            tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
            special_tokens=COCO_CLASS_TOKENS,
            default_weights=DEFAULT_WEIGHTS,
            license="Apache-2.0",
        )
    )
