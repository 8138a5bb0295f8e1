"""Quantizers: EMA vector quantization with l2-normalised codes (dead-code restart), and FSQ.

Both map continuous vectors ``z (..., code_dim)`` to ids in ``[0, codebook_size)`` and back, with a
straight-through gradient. They share :class:`QuantizerOutput` and :func:`codebook_stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    """``quantized`` (..., code_dim) straight-through codes; ``indices`` (...) int64; ``loss`` scalar
    (commitment, 0 for FSQ); ``counts`` (codebook_size,) how often each code was used in the batch."""

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    counts: torch.Tensor


def codebook_stats(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Codebook usage (fraction of codes used at least once) and perplexity (exp of the code entropy)."""
    counts = counts.float()
    total = counts.sum().clamp_min(1.0)
    p = counts / total
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {"usage": (counts > 0).float().mean(), "perplexity": torch.exp(entropy)}


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


class EMAVectorQuantizer(nn.Module):
    """Vector quantizer whose codebook follows an exponential moving average of its assigned inputs.

    Inputs and codes are l2-normalised, so assignment is by cosine similarity (improves codebook usage,
    as in ViT-VQGAN). Codes whose EMA assignment count falls below ``dead_code_threshold`` are restarted
    from random inputs of the current batch. The codebook is initialised from the first training batch.
    Statistics are all-reduced across processes when ``torch.distributed`` is initialised.
    """

    def __init__(self, codebook_size: int, code_dim: int, *, decay: float = 0.99, commitment_weight: float = 0.25,
                 dead_code_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        if codebook_size < 2 or code_dim < 1:
            raise ValueError(f"EMAVectorQuantizer needs codebook_size >= 2 and code_dim >= 1, got {codebook_size}, {code_dim}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMAVectorQuantizer decay must be in (0, 1), got {decay}")
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.commitment_weight = commitment_weight
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, code_dim), dim=-1))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code (cosine) of each row of ``z (N, D)`` → ``(N,)`` int64."""
        return (F.normalize(z, dim=-1) @ self.codebook.t()).argmax(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` ids → ``(..., code_dim)`` codes."""
        return F.embedding(indices, self.codebook)

    @torch.no_grad()
    def _sample_rows(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        idx = torch.randint(0, flat.shape[0], (n,), device=flat.device)
        rows = flat[idx].clone()
        if _distributed():
            dist.broadcast(rows, src=0)
        return rows

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        if not bool(self.initialized):
            rows = F.normalize(self._sample_rows(flat, self.codebook_size), dim=-1)
            self.codebook.copy_(rows)
            self.embed_sum.copy_(rows)
            self.cluster_size.fill_(1.0)
            self.initialized.fill_(True)
            return
        batch_sum = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        _all_reduce(batch_sum)
        self.cluster_size.mul_(self.decay).add_(counts.float(), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(batch_sum, alpha=1 - self.decay)
        self.codebook.copy_(F.normalize(self.embed_sum, dim=-1))
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead:
            rows = F.normalize(self._sample_rows(flat, n_dead), dim=-1)
            self.codebook[dead] = rows
            self.embed_sum[dead] = rows
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        shape = z.shape[:-1]
        z = F.normalize(z.float(), dim=-1)
        flat = z.reshape(-1, self.code_dim)  # (N, D)
        indices = self.assign(flat)  # (N,)
        counts = torch.bincount(indices, minlength=self.codebook_size)
        if self.training and torch.is_grad_enabled():  # encode() runs under no_grad: never moves the codebook
            self._update(flat.detach(), indices, _all_reduce(counts))
            # the codebook moved (initialised, updated, restarted): assign against the new one
            indices = self.assign(flat)
            counts = _all_reduce(torch.bincount(indices, minlength=self.codebook_size))
        # outside a training step the counts stay local: encoding never communicates, so ranks of a data job
        # may encode different numbers of batches (uneven shards) without waiting for each other
        codes = self.indices_to_codes(indices)  # (N, D)
        loss = self.commitment_weight * F.mse_loss(flat, codes.detach())
        quantized = flat + (codes - flat).detach()  # straight-through
        return QuantizerOutput(quantized.reshape(*shape, self.code_dim), indices.reshape(shape), loss, counts)


class FSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al. 2023): each of ``len(levels)`` channels is bounded and
    rounded to one of ``levels[i]`` values; the id is the mixed-radix number of the digits.
    ``codebook_size = prod(levels)``; no codebook, no auxiliary loss, no collapse."""

    def __init__(self, levels: list[int] | tuple[int, ...], *, eps: float = 1e-3):
        super().__init__()
        levels = [int(x) for x in levels]
        if not levels or any(x < 2 for x in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels_list = levels
        self.code_dim = len(levels)
        self.codebook_size = int(math.prod(levels))
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv, persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("basis", basis, persistent=False)
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("half_l", half_l, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_l), persistent=False)
        self.register_buffer("half_width", torch.div(lv, 2, rounding_mode="floor"), persistent=False)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z + self.shift) * self.half_l - self.offset

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` ids → ``(..., code_dim)`` codes in [-1, 1]."""
        digits = torch.div(indices.unsqueeze(-1), self.basis, rounding_mode="floor") % self.levels.long()
        return (digits.float() - self.half_width) / self.half_width

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        bounded = self._bound(z.float())
        rounded = bounded + (torch.round(bounded) - bounded).detach()  # straight-through rounding
        quantized = rounded / self.half_width  # (..., code_dim)
        digits = (torch.round(bounded).detach() + self.half_width).long()
        indices = (digits * self.basis).sum(dim=-1)  # (...)
        counts = torch.bincount(indices.reshape(-1), minlength=self.codebook_size)
        if self.training and torch.is_grad_enabled():  # global usage metrics in training steps only
            counts = _all_reduce(counts)
        return QuantizerOutput(quantized, indices, z.new_zeros(()), counts)


def build_quantizer(name: str, *, codebook_size: int, code_dim: int, fsq_levels: list[int] | None, decay: float,
                    commitment_weight: float, dead_code_threshold: float, owner: str) -> nn.Module:
    """A quantizer from a family's config (``name`` is ``"ema_vq"`` or ``"fsq"``)."""
    if name == "ema_vq":
        return EMAVectorQuantizer(codebook_size, code_dim, decay=decay, commitment_weight=commitment_weight,
                                  dead_code_threshold=dead_code_threshold)
    if name == "fsq":
        if not fsq_levels:
            raise ValueError(f"{owner}: quantizer 'fsq' needs fsq_levels, e.g. [8, 5, 5, 5] (1000 codes)")
        return FSQ(fsq_levels)
    raise ValueError(f"{owner}: unknown quantizer {name!r}; choose 'ema_vq' or 'fsq'")
