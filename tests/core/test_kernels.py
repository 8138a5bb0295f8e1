"""The CPU fast path's kernels (fourm_core.accel): the oneDNN linear (oneDNN where it applies, ``F.linear``
everywhere else, same results), its routing around generation passes, and the one-token decoder step plan
(equal to ``DecoderBlock.forward`` / ``FourM.decode``)."""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fourm_core.accel import CpuFastPath, decoder_step, onednn, step_plan
from fourm_core.accel.onednn import linear, onednn_linear_available, routed
from fourm_core.model import build_model
from fourm_core.model.blocks import Mlp
from fourm_core.model.testing import random_mod_dict, tiny_modalities

needs_onednn = pytest.mark.requires("onednn", available=onednn_linear_available(),
                                    reason="no oneDNN linear kernel on this build")


@pytest.fixture
def onednn_on():
    before = onednn._state["enabled"]
    onednn.set_onednn_linear(True)
    yield
    onednn.set_onednn_linear(before)


def _big(rows=300, d_in=256, d_out=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, d_in, generator=g), torch.randn(d_out, d_in, generator=g) / 16,
            torch.randn(d_out, generator=g))


def _model(**overrides):
    torch.manual_seed(0)
    cfg = dict(dim=256, encoder_depth=2, decoder_depth=2, num_heads=4)
    cfg.update(overrides)
    return build_model(tiny_modalities(), cfg).eval()


# ---------------------------------------------------------------------------------------------- oneDNN linear
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
        assert onednn._use_onednn(x, w, b)
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
        assert onednn._use_onednn(x, w, b)
        assert not onednn._use_onednn(x[:4], w[:64], b[:64])  # small product: F.linear's lower overhead
        assert onednn._use_onednn(x[:1], torch.randn(8192, 256), None)  # a vocabulary-wide output
        assert not onednn._use_onednn(x.double(), w.double(), b.double())
        assert not onednn._use_onednn(x, w.t().contiguous().t(), b)  # a non-contiguous weight
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn._use_onednn(x, w, b)  # autocast decides the dtype, so F.linear
    wp = torch.nn.Parameter(w)
    assert not onednn._use_onednn(x, wp, b)  # training: autograd needs F.linear
    with torch.no_grad():
        assert onednn._use_onednn(x, wp, b)
    onednn.set_onednn_linear(False)
    with torch.no_grad():
        assert not onednn._use_onednn(x, w, b)


def test_environment_switch_turns_it_off():
    code = "from fourm_core.accel.onednn import onednn_linear_available as a; print(a())"
    env = {**os.environ, "FOURM_ONEDNN_LINEAR": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------- routing
def test_the_model_holds_plain_linear_layers_and_trains_on_them():
    """Every linear layer is a plain ``nn.Linear`` (training never sees the oneDNN kernel); a training step
    gives the same gradients inside :func:`routed` as outside (autograd always takes ``F.linear``)."""
    model = _model().train()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is torch.nn.Linear for m in linears)
    batch = random_mod_dict(model.modalities, batch=4, seed=0)

    def grads():
        model.zero_grad()
        model(batch).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    with routed(model):
        inside = grads()
    assert all(torch.equal(a, b) for a, b in zip(plain, inside))


def test_routing_is_undone_on_exit_and_nests():
    model = _model()
    modules = [m for m in model.modules() if type(m) in (torch.nn.Linear, Mlp)]
    with routed(model):
        assert all("forward" in m.__dict__ for m in modules)
        with routed(model):
            pass
        assert all("forward" in m.__dict__ for m in modules)  # the outer context still holds
    assert not any("forward" in m.__dict__ for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"), routed(model):
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert not onednn._active  # nothing is left registered


@pytest.mark.parametrize("act", ["gelu", "swiglu"])
def test_routed_modules_compute_what_the_modules_compute(act):
    """A routed MLP (GELU fused into fc1's product) and routed linear layers equal the plain modules."""
    model = _model(act=act)
    mlp = model.encoder[0].mlp
    x = torch.randn(2, 300, 256)
    with torch.no_grad():
        plain, plain_qkv = mlp(x), model.encoder[0].attn.qkv(x)
        with routed(model):
            fast, fast_qkv = mlp(x), model.encoder[0].attn.qkv(x)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_qkv, plain_qkv, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_model_inference_agrees_with_and_without_onednn(onednn_on, monkeypatch):
    model = _model()
    batch = random_mod_dict(model.modalities, batch=16, seed=0)
    calls = []
    real = onednn._use_onednn

    def recording(*args):
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(onednn, "_use_onednn", recording)
    with torch.no_grad():
        plain = model(batch).loss
        assert not calls  # outside generation the model never reaches the oneDNN kernel
        with routed(model):
            fast = model(batch).loss
    assert any(calls)  # the MLPs of this batch took the oneDNN path
    assert torch.allclose(fast, plain, rtol=1e-5)


def test_model_and_sampler_never_import_the_fast_path():
    """The fast path is behind one boundary: only the generation backend imports fourm_core.accel."""
    root = Path(__import__("fourm_core").__file__).parent
    sources = [*sorted((root / "model").glob("*.py")), root / "generation" / "sampler.py"]
    for path in sources:
        tree = ast.parse(path.read_text())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if "accel" in n], path


# ---------------------------------------------------------------------------------------------- step plan
@pytest.mark.parametrize("variant", [{}, {"act": "swiglu", "qk_norm": True, "qkv_bias": False, "proj_bias": False,
                                      "mlp_bias": False, "norm_bias": False}])
def test_decoder_step_equals_the_decoder_block(variant):
    """One block: the step plan's one-position computation equals ``DecoderBlock.forward`` on that position
    with the same cached keys/values (output and the keys/values it appends)."""
    model = _model(dim=32, num_heads=2, **variant)
    block = model.decoder[0]
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(3, 7, 32, generator=g)
    past = (torch.randn(3, 2, 4, 16, generator=g), torch.randn(3, 2, 4, 16, generator=g))
    h = torch.randn(3, 32, generator=g)
    allowed = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    allowed[0, ..., 5:] = False
    with torch.no_grad():
        kv = block.context_kv(ctx)
        ref, ref_kv = block(h[:, None], kv, None, allowed, past)
        out, out_kv = decoder_step(step_plan(block), h, kv, allowed, past, model.config.num_heads,
                                   model.config.norm_eps)
    torch.testing.assert_close(out, ref[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_kv[0], ref_kv[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_kv[1], ref_kv[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", [{}, {"act": "swiglu", "qk_norm": True, "qkv_bias": False, "proj_bias": False,
                                      "mlp_bias": False, "norm_bias": False}])
def test_one_token_step_path_matches_decode(variant):
    """Inference one-token steps (transposed-weight path) equal the plain decoder, and follow weight updates."""
    model = _model(dim=32, num_heads=2, **variant)
    fast_path = CpuFastPath(model)
    md = random_mod_dict(model.modalities, batch=3, seed=5)
    toks = torch.randint(1, 40, (3, 5))
    pos = torch.arange(5).expand(3, 5)
    with torch.no_grad():
        enc = model.encode(md)
        x, e = model.decoder_queries("caption", pos, toks)
        full = model.decode(x, e, model.decoder_context(enc), causal=True)

        def stepwise(fast: bool) -> torch.Tensor:
            cache = model.decoder_context(enc)
            plans = fast_path.step_plans()
            out = [fast_path.decode_step(x[:, i:i + 1], e[:, i:i + 1], cache, plans) if fast
                   else model.decode(x[:, i:i + 1], e[:, i:i + 1], cache, use_cache=True)[:, 0] for i in range(5)]
            assert cache.self_length == 5
            return torch.stack(out, 1)

        fast = stepwise(True)
        assert fast_path.step_plans() is fast_path.step_plans()  # built once while the weights stay
        torch.testing.assert_close(fast, stepwise(False), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
        model.decoder[0].mlp.fc2.weight.mul_(0.5)  # an in-place update invalidates the transposed copies
        updated = stepwise(True)
        torch.testing.assert_close(updated, stepwise(False), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(updated, fast)
        moved = copy.deepcopy(model.decoder[1].norm2.weight)  # a replaced parameter (new storage) too
        model.decoder[1].norm2.weight = torch.nn.Parameter(moved * 2.0)
        torch.testing.assert_close(stepwise(True), stepwise(False), atol=1e-5, rtol=1e-5)
