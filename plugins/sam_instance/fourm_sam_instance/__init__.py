"""fourm-sam-instance: SAM instance masks (``sam_instance``) and the reusable SAM runner (:mod:`.runner`)."""

__version__ = "0.1.0"
