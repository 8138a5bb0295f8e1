"""fourm-clip: CLIP patch features (``clip``) from an open_clip vision tower."""

__version__ = "0.1.0"
