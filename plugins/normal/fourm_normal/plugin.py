"""Registers ``normal``: surface normals, uint8 (256, 256, 3) encoding n in [-1, 1] as (n + 1) * 127.5.

No torch/numpy import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: TIPSv2 ViT-B/14 with DPT heads (transformers ``Tipsv2DptForNormalEstimation``, Apache-2.0).
DEFAULT_WEIGHTS = "google/tipsv2-b14-dpt"
RAW_SIZE = 256
_C = "fourm_normal.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="normal",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_normal_8k_224-448",
        kind="image",
        vocab_size=8192,
        grid=(14, 14),
        aliases=("tok_normal@224",),
        description=("surface normals from a transformers normal-estimation model (AutoModelForNormalEstimation), "
                     "unit vectors stored as (n+1)*127.5 uint8; 14x14 tokens of an MSE ViT VQ-VAE"),
        tokenizer=f"{_C}:make_tokenizer",
        labeler=f"{_C}:NormalLabeler",
        visualizer=f"{_C}:visualize",
        transform=f"{_C}:NormalTransform",
        metrics="fourm_normal.metrics:make_metric",
        reader="fourm_normal.readers:NormalReader",
        storage=StorageSpec(dtype="uint8", shape=(RAW_SIZE, RAW_SIZE, 3)),
        requires=("rgb",),
        license="Apache-2.0 (plugin); weights: see their model card",
        default_weights=DEFAULT_WEIGHTS,
    ))
