"""fourm-normal: surface normals from a transformers normal-estimation model (or derived from depth)."""

__version__ = "0.1.0"
