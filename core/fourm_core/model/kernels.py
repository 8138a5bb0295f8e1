"""Transitional: ``Linear`` is plain ``torch.nn.Linear``.

The model holds plain ``nn.Linear`` layers (training included). The oneDNN inference kernel that used to live
here is :mod:`fourm_core.accel.onednn`, which generation switches on around its passes on CPU. This module
only keeps the import of ``embeddings.py`` working until it names ``nn.Linear`` directly; then delete it.
"""

from torch.nn import Linear

__all__ = ["Linear"]
