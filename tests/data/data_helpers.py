"""Constants and helpers of the data tests (a uniquely named module: test files import from it; importing from
``conftest`` breaks as soon as another test directory has a conftest too)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
RUNNER = FIXTURES / "run_fourm.py"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

RAW_SIZE = 64
PER_SHARD = 2


def copy_store(src: str, dst: Path) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def np_equal_lists(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
