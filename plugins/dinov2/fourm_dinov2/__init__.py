"""fourm-dinov2: DINOv2 patch features (``dinov2``) and global CLS embeddings (``dinov2_global``)."""

__version__ = "0.1.0"
