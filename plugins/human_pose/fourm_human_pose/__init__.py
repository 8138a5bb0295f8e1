"""fourm modality plugin: human poses (person detector + ViTPose keypoints)."""

__version__ = "0.1.0"
