"""Constants and helpers of the data tests (a uniquely named module: test files import from it; importing from
``conftest`` breaks as soon as another test directory has a conftest too)."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def run_fourm(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The ``fourm`` CLI in a subprocess, with only the built-ins and the test plugin (see fixtures/run_fourm.py)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for hook in ("FOURM_DATATEST_KILL_AFTER_CROPS", "FOURM_DATATEST_KILL_AFTER", "FOURM_TEST_KILL_AT"):
        full_env.pop(hook, None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)
