"""fourm_trainers: jobs that loop, run under Hugging Face Accelerate."""

__version__ = "0.1.0"
