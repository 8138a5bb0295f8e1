"""fourm modality plugin: object detection boxes (transformers detector)."""

__version__ = "0.1.0"
