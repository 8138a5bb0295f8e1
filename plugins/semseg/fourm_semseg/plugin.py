"""Registers ``semseg``: per-pixel class ids, uint8 (256, 256, 1), COCO panoptic's 133 classes, 255 = ignore.

No torch/numpy import here: components are referenced by import strings.
"""

from __future__ import annotations

from fourm_registry import ModalitySpec, StorageSpec, hookimpl

#: Mask2Former with a Swin-B backbone trained on COCO panoptic (133 classes; ~107 M parameters).
DEFAULT_WEIGHTS = "facebook/mask2former-swin-base-coco-panoptic"
RAW_SIZE = 256
NUM_CLASSES = 133
IGNORE_INDEX = 255
_C = "fourm_semseg.components"


@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(
        name="semseg",
        release_tokenizer="EPFL-VILAB/4M_tokenizers_semseg_4k_224-448",
        kind="image",
        vocab_size=4096,
        grid=(14, 14),
        aliases=("tok_semseg@224",),
        description=("semantic segmentation, COCO panoptic 133 classes (255 = ignore), from Mask2Former/OneFormer; "
                     "14x14 tokens of a cross-entropy ViT VQ-VAE"),
        tokenizer=f"{_C}:make_tokenizer",
        labeler=f"{_C}:SemsegLabeler",
        visualizer=f"{_C}:visualize",
        transform=f"{_C}:SemsegTransform",
        metrics="fourm_semseg.metrics:make_metric",
        reader="fourm_semseg.readers:SemsegReader",
        storage=StorageSpec(dtype="uint8", shape=(RAW_SIZE, RAW_SIZE, 1), fill_value=IGNORE_INDEX),
        requires=("rgb",),
        license="Apache-2.0 (plugin); weights: see their model card",
        default_weights=DEFAULT_WEIGHTS,
    ))
