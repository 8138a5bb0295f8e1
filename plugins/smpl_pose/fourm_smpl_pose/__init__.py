"""fourm modality plugin: 4M-21's ``human_poses`` (HMR2 SMPL parameters as text)."""

__version__ = "0.1.0"
