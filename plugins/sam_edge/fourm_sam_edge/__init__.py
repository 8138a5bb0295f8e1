"""fourm-sam-edge: boundaries of SAM instance masks (``sam_edge``)."""

__version__ = "0.1.0"
