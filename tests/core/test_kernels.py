"""The inference linear kernel: oneDNN where it applies, ``F.linear`` everywhere else, same results."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from fourm_core.model import kernels
from fourm_core.model.kernels import Linear, linear, onednn_linear_available

needs_onednn = pytest.mark.requires("onednn", available=onednn_linear_available(),
                                    reason="no oneDNN linear kernel on this build")


@pytest.fixture
def onednn_on():
    before = kernels._state["enabled"]
    kernels.set_onednn_linear(True)
    yield
    kernels.set_onednn_linear(before)


def _big(rows=300, d_in=256, d_out=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, d_in, generator=g), torch.randn(d_out, d_in, generator=g) / 16,
            torch.randn(d_out, generator=g))


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", ["2d", "3d", "strided"])
def test_linear_is_float32_accurate(onednn_on, bias, shape):
    x, w, b = _big()
    b = b if bias else None
    if shape == "3d":
        x = x.reshape(3, 100, 256)
    elif shape == "strided":
        x = torch.randn(256, 300).t()  # a transposed view
    with torch.no_grad():
        assert kernels._use_onednn(x, w, b)
        y = linear(x, w, b)
        exact = F.linear(x.double(), w.double(), None if b is None else b.double())
    assert y.dtype == torch.float32 and y.shape == exact.shape
    # float32 accuracy (a bfloat16 product would be off by ~1e-2 here)
    assert (y.double() - exact).abs().max() < 1e-4
    assert (F.linear(x, w, b).double() - exact).abs().max() < 1e-4


@needs_onednn
def test_fused_gelu_is_the_exact_erf_gelu(onednn_on):
    x, w, b = _big()
    with torch.no_grad():
        y = linear(x, w, b, gelu=True)
    pre = F.linear(x.double(), w.double(), b.double())
    assert (y.double() - F.gelu(pre)).abs().max() < 1e-4
    assert (y.double() - F.gelu(pre, approximate="tanh")).abs().max() > 1e-4  # not the tanh approximation


@needs_onednn
def test_where_onednn_is_used(onednn_on):
    x, w, b = _big()
    with torch.no_grad():
        assert kernels._use_onednn(x, w, b)
        assert not kernels._use_onednn(x[:4], w[:64], b[:64])  # small product: F.linear's lower overhead
        assert kernels._use_onednn(x[:1], torch.randn(8192, 256), None)  # a vocabulary-wide output
        assert not kernels._use_onednn(x.double(), w.double(), b.double())
        assert not kernels._use_onednn(x, w.t().contiguous().t(), b)  # a non-contiguous weight
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not kernels._use_onednn(x, w, b)  # autocast decides the dtype, so F.linear
    wp = torch.nn.Parameter(w)
    assert not kernels._use_onednn(x, wp, b)  # training: autograd needs F.linear
    with torch.no_grad():
        assert kernels._use_onednn(x, wp, b)
    kernels.set_onednn_linear(False)
    with torch.no_grad():
        assert not kernels._use_onednn(x, w, b)


def test_linear_module_trains_like_nn_linear():
    torch.manual_seed(0)
    ours, ref = Linear(256, 1024), torch.nn.Linear(256, 1024)
    ref.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(300, 256)
    ours(x).square().mean().backward()
    ref(x).square().mean().backward()
    assert torch.allclose(ours.weight.grad, ref.weight.grad) and torch.allclose(ours.bias.grad, ref.bias.grad)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


@needs_onednn
def test_model_inference_agrees_with_and_without_onednn(onednn_on):
    from fourm_core.model import build_model
    from fourm_core.model.testing import random_mod_dict, tiny_modalities

    torch.manual_seed(0)
    mods = tiny_modalities()
    model = build_model(mods, dict(dim=256, encoder_depth=2, decoder_depth=2, num_heads=4)).eval()
    batch = random_mod_dict(mods, batch=16, seed=0)
    calls = []
    real = kernels._use_onednn
    def recording(*args):
        calls.append(real(*args))
        return calls[-1]

    kernels._use_onednn = recording
    try:
        with torch.no_grad():
            fast = model(batch).loss
            kernels.set_onednn_linear(False)
            plain = model(batch).loss
    finally:
        kernels._use_onednn = real
    assert any(calls)  # the MLPs and output heads of this batch took the oneDNN path
    assert torch.allclose(fast, plain, rtol=1e-5)


def test_environment_switch_turns_it_off():
    code = "from fourm_core.model.kernels import onednn_linear_available as a; print(a())"
    env = {**os.environ, "FOURM_ONEDNN_LINEAR": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
