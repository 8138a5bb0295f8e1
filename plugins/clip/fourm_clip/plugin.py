"""Registers ``clip``: the projected patch tokens of an open_clip ViT-B/16 (14 × 14 × 512 at 224 px).

No torch import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

#: ``MODEL:PRETRAINED``: an open_clip model name and a pretrained tag, a local weights file, or
#: ``hf-hub:org/name`` / ``local-dir:/path`` (then no tag). The reference's ``CLIP-B16`` is OpenAI's ViT-B/16.
DEFAULT_WEIGHTS = "ViT-B-16:openai"
FEATURE_DIM = 512
GRID = (14, 14)
PATCH_SIZE = 16
_C = "fourm_clip.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="clip",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_CLIP-B16_8k_224-448",
        kind="image",
        vocab_size=8192,
        grid=GRID,
        aliases=("tok_clip@224",),
        description="CLIP ViT-B/16 patch tokens projected to the 512-d joint space (14x14x512 at 224 px)",
        tokenizer=f"{_C}:make_feature_tokenizer",
        labeler=ComponentRef(target=f"{_C}:ClipLabeler"),
        visualizer=f"{_C}:visualize_features",
        transform=ComponentRef(target=f"{_C}:make_feature_transform", context=("raw_size",)),
        storage=StorageSpec(dtype="float16", shape=(*GRID, FEATURE_DIM)),
        requires=("rgb",),
        metrics="fourm_core.metrics.retrieval:EmbeddingMetric",
        license="MIT (OpenAI CLIP weights)",
        default_weights=DEFAULT_WEIGHTS,
    ))
