"""fourm-canny-edge: Canny edge maps computed with OpenCV (weight-free)."""

__version__ = "0.1.0"
