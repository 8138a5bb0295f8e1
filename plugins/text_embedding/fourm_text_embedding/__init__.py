"""fourm modality plugin: T5 caption embeddings (encoder-only embedding sequence)."""

__version__ = "0.1.0"
