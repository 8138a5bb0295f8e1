"""fourm-semseg: COCO-panoptic semantic segmentation from transformers Mask2Former / OneFormer."""

__version__ = "0.1.0"
