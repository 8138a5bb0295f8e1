"""fourm_registry: the plugin contract of fourm (no torch here).

Plugins register :class:`ModalitySpec` objects through :func:`hookspecs.fourm_register_modalities`;
the core builds models, data pipelines and generation from the resulting :class:`ModalitySet`.
"""

from .contracts import (
    FACTORY_CONTEXT,
    CropTransform,
    Labeler,
    Serializer,
    Transform,
    Visualizer,
    missing_members,
    protocol_for,
)
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
from .strict import check_keys, check_mapping

__version__ = "0.1.0"

__all__ = [
    "ComponentError", "ComponentRef", "CropTransform", "DECODABLE_KINDS", "FACTORY_CONTEXT", "Labeler", "Serializer",
    "Transform", "Visualizer", "check_keys", "check_mapping", "missing_members", "protocol_for", "DuplicateModalityError", "ENTRY_POINT_GROUP",
    "FourmError", "KINDS", "MaskingDefaults", "ModalitySet", "ModalitySpec", "PluginLoadError", "PluginManager",
    "PluginValidationError", "SpecError", "StorageSpec", "UnknownModalityError", "get_manager", "get_modalities",
    "hookimpl", "modality_id", "reset_manager",
]
