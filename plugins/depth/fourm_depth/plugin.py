"""Registers ``depth``: per-image normalised relative depth, float16 (256, 256, 1), 0 = nearest, 1 = farthest.

No torch/numpy import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: Depth Anything V2 Small (Apache-2.0, 24.8 M parameters, ~99 MB). The Base/Large V2 checkpoints are better
#: but CC-BY-NC-4.0; DPT checkpoints (``Intel/dpt-hybrid-midas``, ``Intel/dpt-large``) work as well.
DEFAULT_WEIGHTS = "depth-anything/Depth-Anything-V2-Small-hf"
RAW_SIZE = 256
_C = "fourm_depth.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="depth",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_depth_8k_224-448",
        kind="image",
        vocab_size=8192,
        grid=(14, 14),
        aliases=("tok_depth@224",),
        description=("relative depth from a transformers depth model, normalised per image to [0, 1] "
                     "(0 = nearest, 1 = farthest); 14x14 tokens of an L1 ViT VQ-VAE"),
        tokenizer=f"{_C}:make_tokenizer",
        labeler=f"{_C}:DepthLabeler",
        visualizer=f"{_C}:visualize",
        transform=f"{_C}:DepthTransform",
        metrics="fourm_depth.metrics:make_metric",
        reader="fourm_depth.readers:DepthReader",
        storage=StorageSpec(dtype="float16", shape=(RAW_SIZE, RAW_SIZE, 1)),
        requires=("rgb",),
        license="Apache-2.0 (plugin); weights: see their model card",
        default_weights=DEFAULT_WEIGHTS,
    ))
