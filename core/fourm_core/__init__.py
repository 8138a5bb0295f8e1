"""fourm_core: the 4M model, masking, tokenizers, generation and data, assembled from the registry."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: names imported on first access (keeps ``import fourm_core`` free of torch)
_LAZY = {"AnyToAny": "fourm_core.pipeline", "evaluate": "fourm_core.evaluation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fourm_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
