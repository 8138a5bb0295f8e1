"""Fixtures shared by the cross-distribution tests."""

from __future__ import annotations

import os
import site
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: offline hub, one thread, every installed plugin."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("FOURM_PLUGINS", None)
    env.pop("FOURM_DISABLE_PLUGINS", None)
    env.update(extra)
    return env


@pytest.fixture
def subprocess_env():
    """Environment for subprocesses (see :func:`run_env`)."""
    return run_env()


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory) -> Path:
    """A brand-new virtualenv (its python) that also sees this environment's packages, through a ``.pth``
    file adding our site directories: third-party plugins are pip-installed into it for real."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_fourm_parent_env.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in ours))
    return py
