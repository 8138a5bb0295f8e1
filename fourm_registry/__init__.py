"""fourm_registry: the plugin contract of fourm (no torch here).

Plugins register :class:`ModalitySpec` objects through :func:`hookspecs.fourm_register_modalities`;
the core builds models, data pipelines and generation from the resulting :class:`ModalitySet`.
"""

from .contracts import (
    FACTORY_CONTEXT,
    CropTransform,
    Labeler,
    Metric,
    Reader,
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
    "ComponentError", "ComponentRef", "CropTransform", "DECODABLE_KINDS", "DuplicateModalityError", "ENTRY_POINT_GROUP",
    "FACTORY_CONTEXT", "FourmError", "KINDS", "Labeler", "MaskingDefaults", "Metric", "ModalitySet", "ModalitySpec",
    "PluginLoadError", "PluginManager", "PluginValidationError", "Reader", "Serializer", "SpecError", "StorageSpec", "Transform",
    "UnknownModalityError", "Visualizer", "check_keys", "check_mapping", "get_manager", "get_modalities", "hookimpl",
    "missing_members", "modality_id", "protocol_for", "reset_manager",
]
