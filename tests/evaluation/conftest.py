"""Fixtures of the evaluation tests: a tiny saved FourM with tiny tokenizers over the installed plugins'
rgb / tok_rgb / depth / caption, whose specs carry test-local metrics, and a small store with references
(built by :mod:`evaltest_fixtures`)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from evaltest_fixtures import eval_modalities, make_store, save_tiny_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def specs():
    return eval_modalities()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, specs):
    """A saved tiny FourM (``DIR/`` with ``tokenizers/``)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), specs)


@pytest.fixture(scope="session")
def pipe(checkpoint, specs):
    from fourm_core import AnyToAny

    return AnyToAny.from_pretrained(checkpoint, modalities=specs)


@pytest.fixture(scope="session")
def store_url(tmp_path_factory, specs):
    return make_store(str(tmp_path_factory.mktemp("store") / "eval.zarr"), specs)
