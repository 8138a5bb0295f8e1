"""fourm modality plugin: colour palettes (k-means)."""

__version__ = "0.1.0"
