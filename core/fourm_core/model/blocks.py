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


def layer_norm(dim: int, cfg: ModelConfig) -> nn.LayerNorm:
    """LayerNorm with the config's eps and bias setting."""
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.norm_bias)


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
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.proj_bias)
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
        self.q = nn.Linear(cfg.dim, cfg.dim, bias=cfg.qkv_bias)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.proj_bias)
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
        self.fc1 = nn.Linear(cfg.dim, hidden, bias=cfg.mlp_bias)
        self.fc2 = nn.Linear(hidden, cfg.dim, bias=cfg.mlp_bias)
        self.fc3 = nn.Linear(cfg.dim, hidden, bias=cfg.mlp_bias) if self.gated else None

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))
        return self.fc2(F.gelu(self.fc1(x)))


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
