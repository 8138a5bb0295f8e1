"""Registers ``sam_edge``: a binary edge map (uint8 0/255, (256, 256, 1)) made of the boundaries of the
``sam_instance`` masks of the same image. No torch import here."""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

_C = "fourm_sam_edge.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="sam_edge",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_edge_8k_224-512",
        kind="image",
        vocab_size=8192,
        grid=(14, 14),
        aliases=("tok_sam_edge@224",),
        description="boundaries of the SAM instance masks (uint8 0/255), derived from the stored sam_instance raw",
        tokenizer=f"{_C}:make_tokenizer",
        labeler=f"{_C}:SamEdgeLabeler",
        visualizer=f"{_C}:visualize",
        transform=f"{_C}:SamEdgeTransform",
        metrics="fourm_sam_edge.metrics:make_metric",
        storage=StorageSpec(dtype="uint8", shape=(256, 256, 1)),
        requires=("sam_instance",),
        license="Apache-2.0",
    ))
