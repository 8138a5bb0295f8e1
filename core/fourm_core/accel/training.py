"""CPU fast path of training: the fused output projection + cross-entropy, and the allocator setting.

:func:`prepare_training` switches a :class:`~fourm_core.model.FourM` on the CPU to these, without changing the
maths (the losses agree with the plain path up to float32 summation order):

* :func:`linear_cross_entropy` computes ``cross_entropy(h @ W.T, targets)`` with fewer passes over the
  ``(R, V)`` logits, the largest activations of a 4M step: the forward turns the log-softmax, in place, into
  ``softmax - onehot`` (the logits' gradient up to a scale, which the backward applies to the small ``(R, D)``
  side). The plain path also builds a dense gradient of the log-probabilities and runs the log-softmax
  backward over it. The model uses it through its ``target_loss`` hook, only where no caller asks for the
  logits;
* :func:`tune_allocator` keeps the training step's large temporaries (logits, embedding-table gradients, tens of
  MB each) in glibc's heap between steps instead of returning them to the kernel: each fresh mapping costs a
  page fault per 4 KiB page (~38 000 per step of the reference configuration, 150 MB of pages zeroed by the
  kernel), on every step;

The optimizer side is the trainer's: ``torch.optim.AdamW(fused=True)`` on the CPU as on GPUs (one kernel over
every parameter and its state; the ``foreach`` and single-tensor implementations make several passes over the
embedding tables, 88 % of the parameters of the reference configuration).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: the largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): blocks up to it come
#: from the heap, larger ones are still mapped (and unmapped) one by one
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Let glibc keep freed blocks up to 32 MiB in the heap (mmap threshold 32 MiB, trim threshold 1 GiB, 64 MiB
    top pad). Once per process; returns whether the setting is in effect (``False`` off Linux / glibc).

    Memory freed by the step is reused by the next one instead of being unmapped and faulted in again; the
    process keeps up to 1 GiB of freed heap (the step's own working set) rather than returning it at once."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(p, v) == 1 for p, v in ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
                                             (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
    _tuned = ok
    log.debug("glibc allocator tuned for training: %s", ok)
    return ok


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ W.T`` against ``targets``; the gradient of the logits is made in the forward."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
        # one fused log-softmax kernel (logsumexp alone is several passes), then the logits are dropped
        logp = torch.log_softmax(h @ weight.t(), dim=1)  # (R, V)
        loss = logp.gather(1, targets[:, None]).mean().neg()
        # log-softmax → softmax - onehot, in place: the logits' gradient up to the 1/R of the mean
        grad = logp.exp_()
        grad.scatter_add_(1, targets[:, None], grad.new_full((targets.shape[0], 1), -1.0))
        ctx.save_for_backward(h, weight, grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        h, weight, grad = ctx.saved_tensors
        # the scale (1/R of the mean times the incoming gradient) goes on the small (R, D) side, not on (R, V)
        scale = grad_loss / grad.shape[0]
        grad_h = (grad @ weight).mul_(scale) if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ (h * scale) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """``F.cross_entropy(h @ weight.T, targets)`` (mean over the R rows of ``h`` (R, D); ``weight`` (V, D);
    ``targets`` (R,) ids) with one ``(R, V)`` buffer. Evaluation (no gradient wanted), other dtypes than float32,
    autocast and empty batches take the plain path."""
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    if (not needs_grad or h.dtype != torch.float32 or weight.dtype != torch.float32 or h.shape[0] == 0
            or torch.is_autocast_enabled(h.device.type)):
        return F.cross_entropy(F.linear(h, weight), targets)
    return _LinearCrossEntropy.apply(h, weight, targets.long())


def prepare_training(model: Any) -> bool:
    """Switch ``model`` (a FourM, or a wrapper whose ``.module`` is one) to the CPU training path when its
    parameters are on the CPU: the fused loss (:func:`linear_cross_entropy`) and the allocator setting.
    Returns whether it was switched (a GPU model keeps the plain path)."""
    inner = getattr(model, "module", model)
    try:
        param = next(inner.parameters())
    except StopIteration:
        return False
    if param.device.type != "cpu" or not hasattr(inner, "target_loss"):
        return False
    inner.target_loss = linear_cross_entropy
    tune_allocator()
    return True

