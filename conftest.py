"""Test-wide settings: offline hub (an accidental download fails at once), one thread per process (the
machine is small and tests run beside other work), deterministic hypothesis profile."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the registry tests run without torch
        pass
    try:
        from hypothesis import HealthCheck, settings

        settings.register_profile("fourm", deadline=None, max_examples=60, derandomize=True,
                                  suppress_health_check=[HealthCheck.too_slow])
        settings.load_profile("fourm")
    except ImportError:
        pass


import pytest  # noqa: E402

_PLUGIN_ENV = ("FOURM_PLUGINS", "FOURM_DISABLE_PLUGINS")


@pytest.fixture(autouse=True)
def _plugin_env_is_restored():
    """A test that changes which plugins load must not leak that into the tests after it."""
    before = {k: os.environ.get(k) for k in _PLUGIN_ENV}
    yield
    after = {k: os.environ.get(k) for k in _PLUGIN_ENV}
    if after != before:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from fourm_registry import reset_manager

        reset_manager()
