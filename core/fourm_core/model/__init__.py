"""The 4M encoder-decoder: :class:`FourM`, its :class:`ModelConfig`, size presets and :func:`build_model`.

See :mod:`fourm_core.model.fourm` for the mod_dict contract and the generation interface.
"""

from .config import PRESETS, ConfigError, ModelConfig, get_preset
from .fourm import (
    LOSS_TYPES,
    DecoderCache,
    DecoderRows,
    EncoderOutput,
    FourM,
    FourMOutput,
    ModDictError,
    build_model,
)

__all__ = [
    "PRESETS", "ConfigError", "ModelConfig", "get_preset", "LOSS_TYPES", "DecoderCache", "DecoderRows",
    "EncoderOutput", "FourM", "FourMOutput", "ModDictError", "build_model",
]
