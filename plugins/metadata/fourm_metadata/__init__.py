"""fourm modality plugin: image metadata (statistics and counts)."""

__version__ = "0.1.0"
