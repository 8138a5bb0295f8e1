"""Checkpoints of the reference 4M implementation (apple/ml-4m): load, run, fine-tune, verify parity.

* Released checkpoints (hub ids such as ``EPFL-VILAB/4M-21_XL``, their directories, or single ``.safetensors``
  files): :func:`load_release` (also reached through ``FourM.from_pretrained``), written back with
  :func:`save_release`. Their modalities come from the reference's modality table (:mod:`.table`) and map
  onto installed plugins through ``ModalitySpec.aliases``.
* State dicts with an explicit reference config (``model`` + ``modalities``): :func:`load_ml4m_checkpoint`.
* Parity: :func:`verify` (a parity directory) and :func:`verify_release` (a release-format set).

Modules: ``config`` (model configs), ``table`` (the reference's modalities), ``modalities`` (→ plugin specs),
``weights`` (state-dict names), ``release`` (formats, hub resolution), ``conformance`` (explicit configs),
``verify`` / ``release_check`` (parity), ``__main__`` (command line)::

    python -m fourm_core.compat.ml4m verify DIR           # a parity set
    python -m fourm_core.compat.ml4m verify-release DIR   # a release-format set
"""

from .config import ML4MImportError, is_release_config, model_config_from_reference, release_to_reference, sanitize_name
from .conformance import load_ml4m_checkpoint, mod_dict_from_reference, read_config
from .modalities import SERIALIZER, modalities_from_reference
from .release import Located, load_release, locate, new_release_model, save_release
from .release_check import verify_model, verify_release
from .table import REFERENCE_MODALITIES, RefModality, lookup
from .verify import DEFAULT_TOLERANCES, verify, verify_forward
from .weights import _rename, load_reference_state_dict, to_reference_state_dict

__all__ = [
    "DEFAULT_TOLERANCES", "ML4MImportError", "REFERENCE_MODALITIES", "SERIALIZER", "Located", "RefModality",
    "is_release_config", "load_ml4m_checkpoint", "load_reference_state_dict", "load_release", "locate", "lookup",
    "mod_dict_from_reference", "modalities_from_reference", "model_config_from_reference", "new_release_model", "read_config",
    "release_to_reference", "sanitize_name", "save_release", "to_reference_state_dict", "verify", "verify_forward",
    "verify_model", "verify_release", "main",
]


def main(argv: list[str] | None = None) -> int:
    from .__main__ import main as _main

    return _main(argv)
