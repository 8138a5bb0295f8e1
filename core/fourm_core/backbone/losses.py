"""Fine-tuning losses for dense and classification targets (all differentiable, batched).

* ``cross_entropy``: classes (B, K) or per-pixel (B, K, H, W) logits against integer targets; ``ignore_index``
  pixels (semseg's 255) do not count; ``balanced=True`` weighs the classes of the batch equally.
* ``l1``: mean absolute error over valid pixels.
* ``ssi_l1``: scale-and-shift-invariant L1 for relative depth: per image the least-squares scale and shift
  that best fit the prediction to the target over its valid pixels are applied first, then L1.
* ``cosine``: 1 − cos(prediction, target) per pixel for surface normals (the prediction is normalised).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_entropy(pred: Tensor, target: Tensor, valid: Tensor | None = None, *, ignore_index: int = -100,
                  balanced: bool = False) -> Tensor:
    t = target.long()
    if t.ndim == pred.ndim:  # (B, 1, H, W) class maps
        t = t[:, 0]
    if valid is not None:
        t = t.masked_fill(~valid.reshape(t.shape), ignore_index)
    weight = class_balance_weights(t, pred.shape[1], ignore_index) if balanced else None
    return F.cross_entropy(pred.float(), t, weight=weight, ignore_index=ignore_index)


def class_balance_weights(target: Tensor, k: int, ignore_index: int = -100) -> Tensor:
    """(k,) weights ``n / (c · n_j)`` of the batch's valid targets (``c`` classes present, ``n_j`` of class j):
    every present class weighs as much in total (thin structures such as edges are otherwise drowned by the
    background); absent classes get weight 0."""
    t = target[(target != ignore_index) & (target >= 0) & (target < k)]
    counts = torch.bincount(t, minlength=k).float()
    present = counts > 0
    w = torch.zeros(k, device=target.device)
    w[present] = t.numel() / (present.sum() * counts[present])
    return w


def _mean(err: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return err.mean()
    w = valid.expand_as(err).to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def l1(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    return _mean((pred.float() - target.float()).abs(), valid)


def align_scale_shift(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """``s · pred + t`` with the per-image (s, t) minimising the squared error to ``target`` on valid pixels."""
    p, y = pred.float().flatten(1), target.float().flatten(1)
    w = torch.ones_like(p) if valid is None else valid.expand_as(pred).flatten(1).to(p.dtype)
    n = w.sum(1).clamp_min(1.0)
    mp, my = (w * p).sum(1) / n, (w * y).sum(1) / n
    var = (w * (p - mp[:, None]) ** 2).sum(1)
    cov = (w * (p - mp[:, None]) * (y - my[:, None])).sum(1)
    s = cov / var.clamp_min(1e-8)
    t = my - s * mp
    return (s[:, None] * p + t[:, None]).reshape(pred.shape)


def ssi_l1(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    return l1(align_scale_shift(pred, target, valid), target, valid)


def cosine(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    cos = F.cosine_similarity(pred.float(), target.float(), dim=1, eps=1e-6)[:, None]
    return _mean(1.0 - cos, valid)


LOSSES: dict[str, Callable[..., Tensor]] = {"cross_entropy": cross_entropy, "l1": l1, "ssi_l1": ssi_l1,
                                            "cosine": cosine}


def get_loss(name: str) -> Callable[..., Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; one of {', '.join(LOSSES)}") from None
