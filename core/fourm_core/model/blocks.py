"""Transformer building blocks: attention (SDPA), MLPs, pre-LN encoder and decoder blocks.

Attention masks passed to these modules follow ``scaled_dot_product_attention``'s boolean convention:
**True = the query may attend the key**, shape broadcastable to ``(B, heads, Lq, Lk)``. Callers make sure no
query row is fully blocked (the model lets padding rows attend something harmless).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .kernels import Linear, linear


def layer_norm(dim: int, cfg: ModelConfig) -> nn.LayerNorm:
    """LayerNorm with the config's eps and bias setting."""
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.norm_bias)


def _t(linear: nn.Linear | None) -> tuple[Tensor | None, Tensor | None]:
    """``(W^T as a contiguous (in, out) matrix, bias)`` of a linear layer (``(None, None)`` for no layer).

    On CPU a one-row product ``x (B, in) @ W^T`` streams a contiguous ``(in, out)`` matrix about 1.5-3x faster
    than ``F.linear`` against the ``(out, in)`` layout when the weights are not in cache (decoding one token
    per step reads every decoder weight once per step); the maths is the same up to summation order."""
    if linear is None:
        return None, None
    return linear.weight.detach().t().contiguous(), None if linear.bias is None else linear.bias.detach()


def _ln(norm: nn.LayerNorm) -> tuple[Tensor | None, Tensor | None]:
    weight, bias = norm.weight, norm.bias
    return None if weight is None else weight.detach(), None if bias is None else bias.detach()


#: One decoder block prepared for one-token steps (:func:`step_plan`): LayerNorm parameters, transposed linear
#: weights and biases, in the order :func:`decoder_step` unpacks them.
StepPlan = tuple


def step_plan(block: DecoderBlock) -> StepPlan:
    """Everything :func:`decoder_step` needs from ``block``, as plain tensors (built once per weight version)."""
    sa, ca, mlp = block.self_attn, block.cross_attn, block.mlp
    return (*_ln(block.norm1), *_t(sa.qkv), sa.q_norm, sa.k_norm, *_t(sa.proj),
            *_ln(block.query_norm), *_t(ca.q), ca.q_norm, *_t(ca.proj),
            *_ln(block.norm2), *_t(mlp.fc1), *_t(mlp.fc3), *_t(mlp.fc2))


def _lin(x: Tensor, wt: Tensor, bias: Tensor | None) -> Tensor:
    return x @ wt if bias is None else torch.addmm(bias, x, wt)


def decoder_step(plan: StepPlan, h: Tensor, context_kv: tuple[Tensor, Tensor], cross_allowed: Tensor | None,
                 past_kv: tuple[Tensor, Tensor] | None, heads: int, eps: float
                 ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """:meth:`DecoderBlock.forward` for one new position per sample, ``h`` ``(B, D)``, attending the cached
    self-attention keys/values ``past_kv`` (and itself) → (output (B, D), (k, v) each (B, H, past+1, hd)).

    Same maths as the module path; written as direct functional calls on a prepared :func:`step_plan`
    because a one-row step is dominated by per-operation overhead, not by arithmetic."""
    (n1w, n1b, qkv_w, qkv_b, q_norm, k_norm, proj_w, proj_b, qn_w, qn_b, cq_w, cq_b, cq_norm, cp_w, cp_b,
     n2w, n2b, fc1_w, fc1_b, fc3_w, fc3_b, fc2_w, fc2_b) = plan
    b, d = h.shape
    hd = d // heads
    qkv = _lin(F.layer_norm(h, (d,), n1w, n1b, eps), qkv_w, qkv_b).view(b, 3, heads, 1, hd)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (B, H, 1, hd)
    if q_norm is not None:
        q, k = q_norm(q), k_norm(k)
    if past_kv is not None:
        k = torch.cat((past_kv[0], k), dim=2)
        v = torch.cat((past_kv[1], v), dim=2)
    a = F.scaled_dot_product_attention(q, k, v).reshape(b, d)
    h = h + _lin(a, proj_w, proj_b)
    q = _lin(F.layer_norm(h, (d,), qn_w, qn_b, eps), cq_w, cq_b).view(b, heads, 1, hd)
    if cq_norm is not None:
        q = cq_norm(q)
    a = F.scaled_dot_product_attention(q, context_kv[0], context_kv[1], attn_mask=cross_allowed).reshape(b, d)
    h = h + _lin(a, cp_w, cp_b)
    x = F.layer_norm(h, (d,), n2w, n2b, eps)
    if fc3_w is not None:
        hidden = F.silu(_lin(x, fc1_w, fc1_b)) * _lin(x, fc3_w, fc3_b)
    else:
        hidden = F.gelu(_lin(x, fc1_w, fc1_b))
    return h + _lin(hidden, fc2_w, fc2_b), (k, v)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)  # (B, H, n, hd)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, n, hd = x.shape
    return x.transpose(1, 2).reshape(b, n, h * hd)  # (B, n, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``qkv`` output is (q, k, v) each head-major, as in the reference."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = Linear(cfg.dim, cfg.dim, bias=cfg.proj_bias)
        if cfg.qk_norm:
            self.q_norm = layer_norm(cfg.head_dim, cfg)
            self.k_norm = layer_norm(cfg.head_dim, cfg)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: Tensor, allowed: Tensor | None = None,
                past_kv: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` (B, n, D) → (out (B, n, D), (k, v) of all keys incl. ``past_kv``, each (B, H, n_past+n, hd))."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, n, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=2)
            v = torch.cat([past_kv[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(_merge_heads(out)), (k, v)


class CrossAttention(nn.Module):
    """Multi-head cross-attention (queries from the decoder, keys/values from the encoder context)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q = Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.kv = Linear(cfg.dim, 2 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = Linear(cfg.dim, cfg.dim, bias=cfg.proj_bias)
        if cfg.qk_norm:
            self.q_norm = layer_norm(cfg.head_dim, cfg)
            self.k_norm = layer_norm(cfg.head_dim, cfg)
        else:
            self.q_norm = self.k_norm = None

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of an (already normalised) context (B, N, D) → each (B, H, N, hd)."""
        b, n, d = context.shape
        kv = self.kv(context).view(b, n, 2, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return k, v

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], allowed: Tensor | None = None) -> Tensor:
        """``x`` (B, n, D) attends the precomputed context ``kv`` → (B, n, D)."""
        q = _split_heads(self.q(x), self.num_heads)
        if self.q_norm is not None:
            q = self.q_norm(q)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=allowed)
        return self.proj(_merge_heads(out))


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))`` with exact GELU, or SwiGLU ``fc2(silu(fc1(x)) * fc3(x))``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_hidden_dim
        self.gated = cfg.act == "swiglu"
        self.fc1 = Linear(cfg.dim, hidden, bias=cfg.mlp_bias)
        self.fc2 = Linear(hidden, cfg.dim, bias=cfg.mlp_bias)
        self.fc3 = Linear(cfg.dim, hidden, bias=cfg.mlp_bias) if self.gated else None

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))
        return self.fc2(linear(x, self.fc1.weight, self.fc1.bias, gelu=True))


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = layer_norm(cfg.dim, cfg)
        self.attn = SelfAttention(cfg)
        self.norm2 = layer_norm(cfg.dim, cfg)
        self.mlp = Mlp(cfg)

    def forward(self, x: Tensor, allowed: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), allowed)[0]
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-LN decoder block: self-attention, cross-attention to the encoder context, MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = layer_norm(cfg.dim, cfg)
        self.self_attn = SelfAttention(cfg)
        self.query_norm = layer_norm(cfg.dim, cfg)
        self.context_norm = layer_norm(cfg.dim, cfg)
        self.cross_attn = CrossAttention(cfg)
        self.norm2 = layer_norm(cfg.dim, cfg)
        self.mlp = Mlp(cfg)

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys/values of this block for ``context`` (B, N, D) (computed once per encoding)."""
        return self.cross_attn.context_kv(self.context_norm(context))

    def forward(self, x: Tensor, context_kv: tuple[Tensor, Tensor], self_allowed: Tensor | None,
                cross_allowed: Tensor | None, past_kv: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """→ (output (B, n, D), self-attention (k, v) including ``past_kv``)."""
        attn, kv = self.self_attn(self.norm1(x), self_allowed, past_kv)
        x = x + attn
        x = x + self.cross_attn(self.query_norm(x), context_kv, cross_allowed)
        return x + self.mlp(self.norm2(x)), kv
