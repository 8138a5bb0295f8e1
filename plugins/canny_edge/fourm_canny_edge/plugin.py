"""Registers ``canny_edge``: binary edge maps, uint8 (256, 256, 1) with values {0, 255}.

No torch/numpy import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

RAW_SIZE = 256
_C = "fourm_canny_edge.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="canny_edge",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_edge_8k_224-512",
        kind="image",
        vocab_size=8192,
        grid=(14, 14),
        aliases=("tok_canny_edge@224",),
        description=("OpenCV Canny edges of the rgb image ({0, 255}); thresholds configurable, automatic from the "
                     "median intensity by default; 14x14 tokens of a ViT VQ-VAE whose decoder predicts edge strength "
                     "(BCE against thickened, blurred edges)"),
        tokenizer=f"{_C}:make_tokenizer",
        labeler=f"{_C}:CannyLabeler",
        visualizer=f"{_C}:visualize",
        transform=f"{_C}:EdgeTransform",
        metrics="fourm_canny_edge.metrics:make_metric",
        storage=StorageSpec(dtype="uint8", shape=(RAW_SIZE, RAW_SIZE, 1)),
        requires=("rgb",),
        license="Apache-2.0",
    ))
