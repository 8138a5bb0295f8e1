"""fourm-luminance: a minimal modality plugin to copy."""

__version__ = "0.1.0"
