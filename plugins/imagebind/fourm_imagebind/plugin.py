"""Registers ``imagebind`` (16 × 16 × 1280 patch tokens) and ``imagebind_global`` (1280-d class token).

ImageBind's image encoder is the frozen OpenCLIP ViT-H/14 (LAION-2B) tower, so the labeler runs that tower
through open_clip. Like the reference's ``ImageBind-H14`` features, both are the tower's layer-normed
outputs *before* the projection (width 1280). No torch import here.
"""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

DEFAULT_WEIGHTS = "ViT-H-14:laion2b_s32b_b79k"
FEATURE_DIM = 1280
GRID = (16, 16)
PATCH_SIZE = 14
_C = "fourm_imagebind.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="imagebind",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_ImageBind-H14_8k_224-448",
        kind="image",
        vocab_size=8192,
        grid=GRID,
        aliases=("tok_imagebind@224",),
        description="ImageBind (OpenCLIP ViT-H/14) patch tokens at 224 px (16x16x1280), cosine ViT VQ-VAE tokens",
        tokenizer=f"{_C}:make_feature_tokenizer",
        labeler=ComponentRef(target=f"{_C}:ImageBindLabeler", kwargs={"output": "patch"}),
        visualizer=f"{_C}:visualize_features",
        transform=ComponentRef(target=f"{_C}:make_feature_transform", context=("raw_size",)),
        storage=StorageSpec(dtype="float16", shape=(*GRID, FEATURE_DIM)),
        requires=("rgb",),
        metrics="fourm_core.metrics.retrieval:EmbeddingMetric",
        license="MIT (OpenCLIP ViT-H/14 LAION-2B weights)",
        default_weights=DEFAULT_WEIGHTS,
    ))
    register(ModalitySpec(
        name="imagebind_global",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_ImageBind-H14-global_8k_16_224",
        kind="vector",
        vocab_size=8192,
        num_tokens=16,
        aliases=("tok_imagebind_global",),
        description="ImageBind (OpenCLIP ViT-H/14) global class token (1280-d), 16 tokens of an MLP VQ",
        tokenizer=f"{_C}:make_global_tokenizer",
        labeler=ComponentRef(target=f"{_C}:ImageBindLabeler", kwargs={"output": "global"}),
        visualizer=f"{_C}:visualize_global",
        transform=f"{_C}:make_global_transform",
        storage=StorageSpec(dtype="float16", shape=(FEATURE_DIM,)),
        requires=("rgb",),
        metrics="fourm_core.metrics.retrieval:EmbeddingMetric",
        license="MIT (OpenCLIP ViT-H/14 LAION-2B weights)",
        default_weights=DEFAULT_WEIGHTS,
    ))
