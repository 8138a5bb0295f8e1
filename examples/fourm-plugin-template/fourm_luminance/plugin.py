"""Registers the ``luminance`` modality. Keep this module free of torch/numpy imports."""

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

_C = "fourm_luminance.components:"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="luminance",
        kind="image",                 # a grid of VQ tokens, predicted with MaskGIT/ROAR
        vocab_size=1024,
        grid=(14, 14),                # 224 / 16
        storage=StorageSpec(dtype="uint8", shape=(256, 256, 1)),
        requires=("rgb",),            # the labeler reads the rgb raw image
        tokenizer=_C + "build_tokenizer",
        labeler=_C + "LuminanceLabeler",
        transform=_C + "LuminanceTransform",
        visualizer=_C + "visualize",
        description="Rec. 601 luminance of the photo",
        license="Apache-2.0",
    ))
