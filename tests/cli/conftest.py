"""The generation tests' tiny checkpoint (a saved FourM over installed plugins, with tokenizers), shared here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_generation_conftest",
                                               Path(__file__).parents[1] / "generation" / "conftest.py")
_generation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_generation)

checkpoint_dir = _generation.checkpoint_dir
