"""fourm modality plugin: image captions (BLIP captioner)."""

__version__ = "0.1.0"
