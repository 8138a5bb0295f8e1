"""Tiny randomly initialised ViTPose (+ tiny DETR person detector) for tests (no download)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_vitpose(directory: str | Path, *, seed: int = 0) -> str:
    """Save a tiny ``VitPoseForPoseEstimation`` (17 keypoints) and its image processor to ``directory``."""
    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    torch.manual_seed(seed)
    backbone = VitPoseBackboneConfig(image_size=[32, 24], patch_size=[8, 8], hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, mlp_ratio=2, out_indices=[1])
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17)).eval()
    VitPoseImageProcessor(size={"height": 32, "width": 24}).save_pretrained(directory)
    model.save_pretrained(directory)
    return str(directory)
