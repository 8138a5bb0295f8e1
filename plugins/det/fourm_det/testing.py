"""Tiny randomly initialised detector weights for tests (no download): a DETR with a small ResNet backbone."""

from __future__ import annotations

from pathlib import Path

from .classes import COCO_CLASSES


def save_tiny_detr(directory: str | Path, *, image_size: int = 64, num_queries: int = 12, seed: int = 0) -> str:
    """Build a tiny ``DetrForObjectDetection`` (COCO class names in ``id2label``) and its image processor,
    ``save_pretrained`` both to ``directory`` and return it (a path ``DetectionLabeler(weights=...)`` loads)."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    torch.manual_seed(seed)
    backbone = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                            layer_type="basic", out_features=["stage2"])
    id2label = dict(enumerate(COCO_CLASSES))
    config = DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False,
                        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=num_queries,
                        id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = DetrForObjectDetection(config).eval()
    # bias the class logits towards "person" with confident scores, so tiny models produce detections
    with torch.no_grad():
        model.class_labels_classifier.bias.zero_()
        model.class_labels_classifier.bias[0] = 8.0
        model.bbox_predictor.layers[-1].weight.normal_(0.0, 2.0)  # spread the random boxes out
    processor = DetrImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
