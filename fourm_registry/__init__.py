"""fourm_registry: the plugin contract of fourm (no torch here).

Plugins register :class:`ModalitySpec` objects through :func:`hookspecs.fourm_register_modalities`;
the core builds models, data pipelines and generation from the resulting :class:`ModalitySet`.
"""

from .errors import (
    ComponentError,
    DuplicateModalityError,
    FourmError,
    PluginLoadError,
    PluginValidationError,
    SpecError,
    UnknownModalityError,
)
from .hookspecs import hookimpl
from .manager import ENTRY_POINT_GROUP, PluginManager, get_manager, get_modalities, reset_manager
from .specs import (
    DECODABLE_KINDS,
    KINDS,
    ComponentRef,
    MaskingDefaults,
    ModalitySet,
    ModalitySpec,
    StorageSpec,
    modality_id,
)

__version__ = "0.1.0"

__all__ = [
    "ComponentError", "ComponentRef", "DECODABLE_KINDS", "DuplicateModalityError", "ENTRY_POINT_GROUP",
    "FourmError", "KINDS", "MaskingDefaults", "ModalitySet", "ModalitySpec", "PluginLoadError", "PluginManager",
    "PluginValidationError", "SpecError", "StorageSpec", "UnknownModalityError", "get_manager", "get_modalities",
    "hookimpl", "modality_id", "reset_manager",
]
