"""fourm-imagebind: ImageBind image features (``imagebind`` patch map, ``imagebind_global`` vector)."""

__version__ = "0.1.0"
