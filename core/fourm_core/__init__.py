"""fourm_core: the 4M model, masking, tokenizers, generation and data, assembled from the registry."""

__version__ = "0.1.0"
