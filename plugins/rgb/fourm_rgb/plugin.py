"""Registers ``rgb`` (pixels kind: raw patches for the encoder) and ``tok_rgb`` (image kind: VQ tokens of the
same pixels, the target the generation API maps "rgb" to).

No torch/numpy import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: the store's raw resolution (``raw_size``); ingest writes rgb at this size
RAW_SIZE = 256
_C = "fourm_rgb.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="rgb",
        kind="pixels",
        grid=(14, 14),
        patch_size=16,
        channels=3,
        encoder=True,
        decoder=False,
        aliases=("rgb@224",),
        description="RGB image, 224x224 in 16x16 patches (linear patch embedding); written by `fourm ingest`",
        transform=f"{_C}:RGBTransform",
        visualizer=f"{_C}:visualize",
        storage=StorageSpec(dtype="uint8", shape=(RAW_SIZE, RAW_SIZE, 3)),
        license="Apache-2.0",
    ))
    register(ModalitySpec(
        name="tok_rgb",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_rgb_16k_224-448",
        kind="image",
        vocab_size=16384,
        grid=(14, 14),
        aliases=("tok_rgb@224",),
        source="rgb",
        description="RGB image as 14x14 tokens of an MSE ViT VQ-VAE (vocabulary 16384); tokenizes rgb/raw",
        tokenizer=f"{_C}:make_tokenizer",
        transform=f"{_C}:RGBTransform",
        visualizer=f"{_C}:visualize",
        license="Apache-2.0",
    ))
