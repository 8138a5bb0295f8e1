"""oneDNN linear products for float32 inference on x86 CPUs, switched on around generation passes.

:func:`linear` runs a product through oneDNN (``torch.ops.mkldnn._linear_pointwise``, the kernel
``torch.compile`` itself emits for CPU linears) instead of the BLAS behind ``F.linear`` where that is faster:
float32 on CPU, no gradient needed, no autocast or ``torch.compile`` tracing, a contiguous weight and a
product of at least :data:`MIN_MACS` multiply-adds (or an output at least :data:`WIDE_OUTPUT` wide: logits over
a vocabulary). It can apply the exact (erf) GELU inside the product. It is still float32 arithmetic: results
equal ``F.linear`` up to summation order (relative differences ~1e-6); nothing is rounded to a lower precision.
Everything else, including all training, takes ``F.linear``.

The model itself only holds plain ``nn.Linear`` layers. :func:`routed` is the context manager that the
generation backend (through :mod:`fourm_core.accel`) enters around its encoder and decoder passes on CPU: it
points every ``nn.Linear`` of the model at :func:`linear`, and every GELU MLP at the fused GELU product, and
restores the modules' own ``forward`` on exit.

Set the environment variable ``FOURM_ONEDNN_LINEAR=0`` (read at import) or call :func:`set_onednn_linear` to
switch the oneDNN path off.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import threading
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.blocks import Mlp

log = logging.getLogger(__name__)

#: Products with fewer multiply-adds than this (rows x in x out) stay on ``F.linear`` unless the output is at
#: least :data:`WIDE_OUTPUT` wide (logits over a vocabulary): below it oneDNN's fixed per-call cost is larger
#: than what it saves.
MIN_MACS = 1 << 23
WIDE_OUTPUT = 4096

_state: dict[str, bool | None] = {"enabled": os.environ.get("FOURM_ONEDNN_LINEAR", "1") != "0", "works": None}


def set_onednn_linear(enabled: bool) -> None:
    """Switch the oneDNN inference path on or off for this process (it is on by default where it works)."""
    _state["enabled"] = bool(enabled)


def onednn_linear_available() -> bool:
    """Whether :func:`linear` can use oneDNN here: enabled, an x86 CPU build with oneDNN, and a self-check
    against ``F.linear`` passed (run once, on first use)."""
    if not _state["enabled"]:
        return False
    if _state["works"] is None:
        _state["works"] = _self_check()
    return bool(_state["works"])


def _self_check() -> bool:
    if platform.machine().lower() not in {"x86_64", "amd64"} or not torch.backends.mkldnn.is_available():
        return False
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None:
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(s, generator=g) for s in ((9, 32), (48, 32), (48,)))
        with torch.no_grad():
            ok = torch.allclose(op(x, w, b, "none", [], ""), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
            ok = ok and torch.allclose(op(x, w, b, "gelu", [], "none"), F.gelu(F.linear(x, w, b)),
                                       rtol=1e-5, atol=1e-5)
    except Exception as exc:  # a build without the op's CPU kernel: fall back quietly
        log.debug("oneDNN linear unavailable: %s", exc)
        return False
    if not ok:
        log.warning("oneDNN linear disagrees with F.linear on this machine; using F.linear")
    return ok


def _use_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return False  # autograd needs F.linear
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() < 2:
        return False
    if bias is not None and bias.dtype != torch.float32:
        return False
    out_features, in_features = weight.shape
    rows = x.numel() // max(in_features, 1)
    if rows == 0 or (rows * in_features * out_features < MIN_MACS and out_features < WIDE_OUTPUT):
        return False
    if torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling() or not weight.is_contiguous():
        return False
    return onednn_linear_available()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, gelu: bool = False) -> Tensor:
    """``F.linear(x, weight, bias)``, followed by the exact GELU when ``gelu``; through oneDNN where that is
    faster and the result needs no gradient (see the module docstring)."""
    if _use_onednn(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [],
                                                  "none" if gelu else "")
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def _linear_forward(module: nn.Linear, x: Tensor) -> Tensor:
    """``nn.Linear.forward`` through :func:`linear`."""
    return linear(x, module.weight, module.bias)


def _gelu_mlp_forward(mlp: Mlp, x: Tensor) -> Tensor:
    """``Mlp.forward`` of a GELU MLP (``fc2(gelu(fc1(x)))``) with the GELU fused into ``fc1``'s product."""
    return mlp.fc2(linear(x, mlp.fc1.weight, mlp.fc1.bias, gelu=True))


def _routes(model: nn.Module) -> list[tuple[nn.Module, functools.partial]]:
    """The modules of ``model`` that :func:`routed` redirects, each with its replacement ``forward``: exact
    ``nn.Linear`` and ``Mlp`` instances (a subclass may compute something else).

    Walking the module tree costs more than a generation step can spare, so it happens once per model. A
    layer added or replaced afterwards keeps its own ``forward`` (the same results, without oneDNN)."""
    routes = _known_routes.get(model)
    if routes is None:
        routes = []
        for module in model.modules():
            if type(module) is nn.Linear:
                routes.append((module, functools.partial(_linear_forward, module)))
            elif type(module) is Mlp and not module.gated:
                routes.append((module, functools.partial(_gelu_mlp_forward, module)))
        _known_routes[model] = routes
    return routes


_lock = threading.Lock()
#: model → the modules :func:`routed` redirects (:func:`_routes`)
_known_routes: weakref.WeakKeyDictionary[nn.Module, list] = weakref.WeakKeyDictionary()
#: model → [depth of nested :func:`routed` contexts, the modules redirected now]
_active: weakref.WeakKeyDictionary[nn.Module, list] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def routed(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s linear layers through :func:`linear` (and its GELU MLPs through the fused product)
    inside the block; the modules' own ``forward`` is back on exit. Nested and concurrent uses on one model
    share one redirection, undone when the last one exits. Results equal the plain modules' up to float32
    summation order, with or without it."""
    with _lock:
        entry = _active.get(model)
        if entry is None:  # skip a module whose forward somebody else has replaced
            routes = [(m, f) for m, f in _routes(model) if "forward" not in m.__dict__]
            entry = _active[model] = [0, routes]
            for module, forward in routes:
                module.__dict__["forward"] = forward  # an instance attribute: what nn.Module.__call__ runs
        entry[0] += 1
    try:
        yield
    finally:
        with _lock:
            entry[0] -= 1
            if entry[0] == 0:
                for module, _ in entry[1]:
                    module.__dict__.pop("forward", None)
                del _active[model]
