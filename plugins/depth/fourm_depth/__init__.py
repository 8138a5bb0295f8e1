"""fourm-depth: relative depth pseudo-labelled by a transformers depth model (Depth-Anything / DPT)."""

__version__ = "0.1.0"
