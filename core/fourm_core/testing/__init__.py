"""fourm's test kit for modality plugins (ours and third parties'): the contract tests and their helpers.

``ModalityPluginTests`` is the class a plugin's tests subclass; the helpers give real photos
(:func:`sample_photos`), check raws against a storage spec (:func:`check_raw`), compare raws
(:func:`raw_equal`, :func:`json_close`), check components against their protocols (:func:`check_component`)
and run the label job over photos (:func:`label_photo_store`, :func:`label_on_cpu_and_cuda`).

Install with ``pip install "fourm-core[testing]"`` (pytest, scikit-image). The distribution registers
:mod:`fourm_core.testing.plugin` as a pytest plugin (entry point group ``pytest11``), which makes pytest
rewrite the kit's assertions and provides the ``fourm_photos`` fixture. Names are imported on first access,
so importing this package (as pytest does at start-up) imports neither torch nor numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule that defines it
_EXPORTS = {
    "ModalityPluginTests": "kit", "check_component": "kit", "build_component": "kit", "HOST_CONTEXT": "kit",
    "RAW_SIZE": "samples", "sample_photos": "samples", "check_raw": "samples", "raw_equal": "samples",
    "json_close": "samples",
    "CROP_BOX": "crops", "MARKERS": "crops", "source_coords": "crops",
    "label_photo_store": "jobs", "label_on_cpu_and_cuda": "jobs",
}
#: the submodules whose assertions pytest rewrites (registered by the pytest plugin before their import)
KIT_MODULES = tuple(f"{__name__}.{m}" for m in sorted(set(_EXPORTS.values())))

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
