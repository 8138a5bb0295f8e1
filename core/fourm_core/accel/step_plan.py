"""One-token decoder steps on CPU: :meth:`DecoderBlock.forward` for one new position per sample, from a plan.

Autoregressive decoding feeds one position per step. Such a step is dominated by per-operation overhead and
by memory traffic, not by arithmetic: every decoder weight is read once per token. :func:`decoder_step`
computes exactly what :meth:`fourm_core.model.blocks.DecoderBlock.forward` computes for that case (same
operations, up to float32 summation order; the tests compare the two), with

* direct functional calls on plain tensors instead of module calls, and
* the linear layers run as ``x (B, in) @ W^T`` against contiguous transposed ``(in, out)`` copies of the
  weights: a one-row product streams that layout several times faster on CPU than ``F.linear`` against the
  ``(out, in)`` layout when the weights are not in cache.

A :class:`BlockStep` holds those copies for one block (built by :func:`step_plan`, one extra copy of the
decoder's linear weights in memory); :func:`decode_step` runs every block and the final norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.blocks import DecoderBlock

#: ``(W^T as a contiguous (in, out) matrix, bias or None)`` of one linear layer
Affine = tuple[Tensor, Tensor | None]
#: ``(weight or None, bias or None)`` of one LayerNorm
Norm = tuple[Tensor | None, Tensor | None]


@dataclass(frozen=True, slots=True)
class BlockStep:
    """One :class:`DecoderBlock` prepared for one-token steps: its LayerNorm parameters, transposed linear
    weights with their biases, and the per-head q/k norms (modules, ``None`` without ``qk_norm``)."""

    norm1: Norm
    qkv: Affine
    q_norm: nn.LayerNorm | None
    k_norm: nn.LayerNorm | None
    proj: Affine
    query_norm: Norm
    cross_q: Affine
    cross_q_norm: nn.LayerNorm | None
    cross_proj: Affine
    norm2: Norm
    fc1: Affine
    fc3: Affine | None  # SwiGLU's gate; None for the GELU MLP
    fc2: Affine


def _affine(linear: nn.Linear) -> Affine:
    return linear.weight.detach().t().contiguous(), None if linear.bias is None else linear.bias.detach()


def _norm(norm: nn.LayerNorm) -> Norm:
    weight, bias = norm.weight, norm.bias
    return None if weight is None else weight.detach(), None if bias is None else bias.detach()


def step_plan(block: DecoderBlock) -> BlockStep:
    """Everything :func:`decoder_step` needs from ``block`` (build it again after the weights change)."""
    sa, ca, mlp = block.self_attn, block.cross_attn, block.mlp
    return BlockStep(
        norm1=_norm(block.norm1), qkv=_affine(sa.qkv), q_norm=sa.q_norm, k_norm=sa.k_norm, proj=_affine(sa.proj),
        query_norm=_norm(block.query_norm), cross_q=_affine(ca.q), cross_q_norm=ca.q_norm,
        cross_proj=_affine(ca.proj), norm2=_norm(block.norm2), fc1=_affine(mlp.fc1),
        fc3=None if mlp.fc3 is None else _affine(mlp.fc3), fc2=_affine(mlp.fc2))


def _lin(x: Tensor, affine: Affine) -> Tensor:
    wt, bias = affine
    return x @ wt if bias is None else torch.addmm(bias, x, wt)


def decoder_step(plan: BlockStep, h: Tensor, context_kv: tuple[Tensor, Tensor], cross_allowed: Tensor | None,
                 past_kv: tuple[Tensor, Tensor] | None, heads: int, eps: float
                 ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``DecoderBlock.forward`` for one new position per sample, ``h`` ``(B, D)``, attending the cached
    self-attention keys/values ``past_kv`` (and itself) → (output (B, D), (k, v) each (B, H, past+1, hd))."""
    b, d = h.shape
    hd = d // heads
    qkv = _lin(F.layer_norm(h, (d,), *plan.norm1, eps), plan.qkv).view(b, 3, heads, 1, hd)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (B, H, 1, hd)
    if plan.q_norm is not None:
        q, k = plan.q_norm(q), plan.k_norm(k)
    if past_kv is not None:
        k = torch.cat((past_kv[0], k), dim=2)
        v = torch.cat((past_kv[1], v), dim=2)
    a = F.scaled_dot_product_attention(q, k, v).reshape(b, d)
    h = h + _lin(a, plan.proj)
    q = _lin(F.layer_norm(h, (d,), *plan.query_norm, eps), plan.cross_q).view(b, heads, 1, hd)
    if plan.cross_q_norm is not None:
        q = plan.cross_q_norm(q)
    a = F.scaled_dot_product_attention(q, context_kv[0], context_kv[1], attn_mask=cross_allowed).reshape(b, d)
    h = h + _lin(a, plan.cross_proj)
    x = F.layer_norm(h, (d,), *plan.norm2, eps)
    if plan.fc3 is not None:
        hidden = F.silu(_lin(x, plan.fc1)) * _lin(x, plan.fc3)
    else:
        hidden = F.gelu(_lin(x, plan.fc1))
    return h + _lin(hidden, plan.fc2), (k, v)


def decode_step(model: Any, plans: list[BlockStep], y: Tensor, cache: Any) -> Tensor:
    """``model.decode(y[:, None], 0, cache, use_cache=True)[:, 0]`` for queries ``y`` ``(B, D)`` (one new
    position per sample): every decoder block through :func:`decoder_step`, appending each block's keys and
    values to ``cache.self_kv``, then ``decoder_norm`` → ``(B, D)``."""
    heads, eps = model.config.num_heads, model.config.norm_eps
    h = y
    for i, plan in enumerate(plans):
        h, cache.self_kv[i] = decoder_step(plan, h, cache.context_kv[i], cache.cross_allowed, cache.self_kv[i],
                                           heads, eps)
    return model.decoder_norm(h)
