"""Registers ``dinov2`` (patch-feature map, image kind) and ``dinov2_global`` (CLS vector, vector kind).

No torch import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

DEFAULT_WEIGHTS = "facebook/dinov2-base"
#: DINOv2-B/14 at 224 × 224 input: a 16 × 16 grid of 768-d patch features (the reference's ``DINOv2-B14``).
FEATURE_DIM = 768
GRID = (16, 16)
PATCH_SIZE = 14
_C = "fourm_dinov2.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="dinov2",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_DINOv2-B14_8k_224-448",
        kind="image",
        vocab_size=8192,
        grid=GRID,
        aliases=("tok_dinov2@224",),
        description="DINOv2-B/14 patch features at 224 px (16x16x768), tokenized by a cosine-loss ViT VQ-VAE",
        tokenizer=f"{_C}:make_feature_tokenizer",
        labeler=ComponentRef(target=f"{_C}:Dinov2Labeler", kwargs={"output": "patch"}),
        visualizer=f"{_C}:visualize_features",
        transform=ComponentRef(target=f"{_C}:make_feature_transform", context=("raw_size",)),
        storage=StorageSpec(dtype="float16", shape=(*GRID, FEATURE_DIM)),
        requires=("rgb",),
        metrics="fourm_core.metrics.retrieval:EmbeddingMetric",
        license="Apache-2.0 (DINOv2 weights)",
        default_weights=DEFAULT_WEIGHTS,
    ))
    register(ModalitySpec(
        name="dinov2_global",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_DINOv2-B14-global_8k_16_224",
        kind="vector",
        vocab_size=8192,
        num_tokens=16,
        aliases=("tok_dinov2_global",),
        description="DINOv2-B/14 global embedding (layer-normed CLS token, 768-d), 16 tokens of an MLP VQ",
        tokenizer=f"{_C}:make_global_tokenizer",
        labeler=ComponentRef(target=f"{_C}:Dinov2Labeler", kwargs={"output": "global"}),
        visualizer=f"{_C}:visualize_global",
        transform=f"{_C}:make_global_transform",
        storage=StorageSpec(dtype="float16", shape=(FEATURE_DIM,)),
        requires=("rgb",),
        metrics="fourm_core.metrics.retrieval:EmbeddingMetric",
        license="Apache-2.0 (DINOv2 weights)",
        default_weights=DEFAULT_WEIGHTS,
    ))
