"""Test helpers shared by the SAM plugins' tests (imported by tests only; needs scikit-image)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .masks import encode_instances


def photo_instances(photo: np.ndarray, max_instances: int = 8) -> dict[str, Any]:
    """Real, irregular instance masks of a photo: the largest Felzenszwalb segments (scikit-image), stored
    exactly as the SAM labeler stores its masks."""
    from skimage.segmentation import felzenszwalb

    seg = felzenszwalb(photo, scale=400, sigma=0.8, min_size=200)
    ids, counts = np.unique(seg, return_counts=True)
    keep = ids[np.argsort(-counts)][:max_instances]
    masks = np.stack([seg == i for i in keep])
    return encode_instances(masks, scores=np.linspace(0.99, 0.9, len(keep)))


def save_tiny_sam(path: Any) -> str:
    """A tiny randomly initialised transformers ``SamModel`` (64 px input) saved under ``path``."""
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=64, patch_size=8,
                           output_channels=32, num_pos_feats=16, window_size=4, global_attn_indexes=[0], mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_dim=64,
                                 iou_head_hidden_dim=32),
    )
    SamModel(config).save_pretrained(path)
    return str(path)
