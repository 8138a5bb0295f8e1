"""fourm-rgb: the RGB image as an encoder input (``rgb``, raw patches) and as VQ tokens (``tok_rgb``)."""

__version__ = "0.1.0"
