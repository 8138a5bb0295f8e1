"""Quantizers of the released 4M tokenizers, inference only (no EMA / codebook updates, no Gumbel sampling).

* :class:`LucidQuantizer` (``quant_type: lucid``): one codebook ``_codebook.embed`` (K, d) with the training
  buffers ``_codebook.cluster_size`` (K) and ``_codebook.initted`` (1) (plus ``_codebook.embed_avg`` for the
  Euclidean variant). With ``norm_codes`` the token is the argmax of the cosine similarity between the
  l2-normalised latent and the l2-normalised codebook rows (first index on ties); otherwise the nearest row in
  Euclidean distance. The quantised vector is the stored row itself.
* :class:`Memcodes` (``quant_type: memcodes``): ``heads`` codebooks ``codes`` (h, K, d) with per-head key /
  value maps ``to_k.weight`` / ``to_v.weight`` (h, d, d): q = latent head · d^-0.5, k = codes·W_k, token =
  argmax_j q·k_j per head, value = (codes·W_v)[token]; heads are concatenated head-major.

Both take a latent map (B, C, H, W) and return :class:`Quantized` (quantised map, tokens, top-2 margins).
Tokens are (B, H, W), or (B, heads, H, W) for multi-head memcodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    """``quant`` (B, C, H, W); ``tokens`` (B, H, W) or (B, heads, H, W) int64; ``margin`` like ``tokens``:
    best minus second-best assignment score (cosine similarity, negative distance or attention logit)."""

    quant: torch.Tensor
    tokens: torch.Tensor
    margin: torch.Tensor


def _top2_margin(scores: torch.Tensor) -> torch.Tensor:
    if scores.shape[-1] < 2:
        return torch.full(scores.shape[:-1], float("inf"), dtype=scores.dtype, device=scores.device)
    top = scores.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


class _Codebook(nn.Module):
    """Holds the lucid codebook buffers under the released names."""

    def __init__(self, codebook_size: int, dim: int, euclidean: bool):
        super().__init__()
        embed = torch.empty(codebook_size, dim).uniform_(-1, 1) if not euclidean else torch.zeros(codebook_size, dim)
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        if euclidean:
            self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("embed", F.normalize(embed, dim=-1) if not euclidean else embed)


class LucidQuantizer(nn.Module):
    """Nearest-code quantiser with a single codebook (see the module docstring)."""

    def __init__(self, *, dim: int, codebook_size: int, norm_codes: bool = True):
        super().__init__()
        self.dim, self.codebook_size, self.norm_codes = dim, codebook_size, norm_codes
        self.heads = 1
        self._codebook = _Codebook(codebook_size, dim, euclidean=not norm_codes)

    @property
    def codebook(self) -> torch.Tensor:
        return self._codebook.embed

    def scores(self, flat: torch.Tensor) -> torch.Tensor:
        """Assignment scores (N, K) of latent rows ``flat`` (N, d): higher is closer."""
        embed = self._codebook.embed
        if self.norm_codes:
            return F.normalize(flat, dim=-1) @ F.normalize(embed, dim=-1).t()
        return -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t() + embed.pow(2).sum(1)[None])

    def forward(self, latent: torch.Tensor) -> Quantized:
        b, c, h, w = latent.shape
        flat = latent.float().permute(0, 2, 3, 1).reshape(-1, c)  # (B·H·W, d)
        scores = self.scores(flat)
        tokens = scores.argmax(dim=-1)
        quant = F.embedding(tokens, self._codebook.embed).view(b, h, w, c).permute(0, 3, 1, 2)
        return Quantized(quant, tokens.view(b, h, w), _top2_margin(scores).view(b, h, w))

    def indices_to_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H, W) → quantised map (B, d, H, W)."""
        return F.embedding(tokens, self._codebook.embed).permute(0, 3, 1, 2)


class _HeadLinear(nn.Module):
    """Per-head linear map without bias: ``weight`` (heads, d_in, d_out), (h, n, d_in) → (h, n, d_out)."""

    def __init__(self, heads: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(heads, d_in, d_out).uniform_(-d_in ** -0.5, d_in ** -0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("hnd,hdc->hnc", x, self.weight)


class Memcodes(nn.Module):
    """Multi-head attention-style codebook (see the module docstring)."""

    def __init__(self, *, dim: int, codebook_size: int, heads: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"memcodes: latent_dim {dim} is not divisible by num_codebooks {heads}")
        self.dim, self.codebook_size, self.heads = dim, codebook_size, heads
        d = dim // heads
        self.scale = d ** -0.5
        self.codes = nn.Parameter(torch.randn(heads, codebook_size, d))
        self.to_k = _HeadLinear(heads, d, d)
        self.to_v = _HeadLinear(heads, d, d)

    def forward(self, latent: torch.Tensor) -> Quantized:
        b, c, h, w = latent.shape
        q = latent.permute(0, 2, 3, 1).reshape(b, h * w, self.heads, c // self.heads).transpose(1, 2)  # (B, h, n, d)
        logits = torch.einsum("bhid,hjd->bhij", q * self.scale, self.to_k(self.codes))  # (B, heads, n, K)
        tokens = logits.argmax(dim=-1)  # (B, heads, n)
        margin = _top2_margin(logits)
        tokens, margin = tokens.view(b, self.heads, h, w), margin.view(b, self.heads, h, w)
        if self.heads == 1:
            tokens, margin = tokens[:, 0], margin[:, 0]
        return Quantized(self.indices_to_embedding(tokens), tokens, margin)

    def indices_to_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, heads, H, W) (or (B, H, W) with one head) → quantised map (B, heads·d, H, W)."""
        if self.heads == 1 and tokens.dim() == 3:
            tokens = tokens[:, None]
        b, heads, h, w = tokens.shape
        values = self.to_v(self.codes)  # (heads, K, d)
        head_ids = torch.arange(heads, device=tokens.device).view(1, heads, 1, 1)
        out = values[head_ids, tokens]  # (B, heads, H, W, d)
        return out.permute(0, 1, 4, 2, 3).reshape(b, heads * values.shape[-1], h, w)
