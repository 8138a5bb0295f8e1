"""Inference kernels for the linear layers of the model.

On x86 CPUs, inference in float32 (no autograd, no autocast) runs the larger matrix products through oneDNN
(``torch.ops.mkldnn._linear_pointwise``, the kernel ``torch.compile`` itself emits for CPU linears) instead of
the BLAS behind ``F.linear``. Measured on the 2-core dev machine (AVX-512, 2 threads), oneDNN is 10-15 % faster
for the transformer's ``(rows, 256) x (256, 1024)``-sized products and 35 % faster for output logits over an
8192-entry vocabulary, and it applies an exact (erf) GELU inside the product. It is still float32 arithmetic:
results match ``F.linear`` up to summation order (relative differences ~1e-6), nothing is rounded to a lower
precision. Small products (under ~8 M multiply-adds) keep ``F.linear``, whose per-call overhead is lower.

Training, autocast, ``torch.compile`` tracing, other devices and dtypes always take ``F.linear``. Set the
environment variable ``FOURM_ONEDNN_LINEAR=0`` (read at import) or call :func:`set_onednn_linear` to switch
the oneDNN path off.
"""

from __future__ import annotations

import logging
import os
import platform

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

#: Products with fewer multiply-adds than this (rows x in x out) stay on ``F.linear`` unless the output is at
#: least :data:`WIDE_OUTPUT` wide (logits over a vocabulary): oneDNN's fixed per-call cost (~10-20 µs) loses
#: below it on the dev machine.
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
        return False  # training: autograd needs F.linear (checked first, the training hot path)
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


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) whose forward is :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
