"""Sampling primitives: top-k / top-p filtering, temperature sampling with confidences, guidance (and the
error bound of guided logits, for the exact int8 proposals of :mod:`fourm_core.accel.proposal`).

All functions work on logits of shape ``(..., V)`` and are batched (no Python loops over tokens).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .errors import GenerationError


def filter_logits(logits: torch.Tensor, top_k: int | float = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) set to ``-inf`` (returns a new tensor).

    ``top_k``: an int keeps the k largest; a float in (0, 1) keeps that fraction of the vocabulary; 0 keeps
    all. ``top_p`` in (0, 1]: keeps the smallest set of most likely tokens whose probability reaches
    ``top_p`` (the most likely token always stays); 0 disables it.
    """
    vocab = logits.shape[-1]
    if top_k and top_k > 0:
        k = int(top_k * vocab) if isinstance(top_k, float) and top_k < 1 else int(top_k)
        k = max(1, min(k, vocab))
        if k < vocab:
            kth = torch.topk(logits, k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Remove a token when the mass *before* it already reaches top_p (keeps the first one above it).
        remove_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    elif top_p < 0 or top_p > 1:
        raise GenerationError(f"top_p must be in [0, 1], got {top_p}")
    return logits


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | float = 0,
    top_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of ``logits`` ``(..., V)``.

    Returns ``(ids (...), probs (...))``: the sampled ids and their probability under the filtered,
    temperature-scaled distribution (MaskGIT's confidence). ``temperature == 0`` is greedy (probability 1).
    """
    shape = logits.shape[:-1]
    if temperature <= 1e-10:
        ids = logits.argmax(dim=-1)
        return ids, torch.ones(shape, dtype=torch.float32, device=logits.device)
    flat = filter_logits(logits.reshape(-1, logits.shape[-1]).float(), top_k, top_p)
    probs = torch.softmax(flat if temperature == 1.0 else flat / temperature, dim=-1)  # (R, V)
    ids = sample_categorical(probs, generator)  # (R,)
    chosen = probs.gather(-1, ids[:, None]).squeeze(-1)
    return ids.reshape(shape), chosen.reshape(shape)


#: Inverse-CDF sampling of many rows over a wide vocabulary runs in two levels, over blocks of about this many
#: entries (a divisor of the vocabulary size between half and twice this when there is one; see
#: :func:`sample_categorical`)
CDF_BLOCK = 128


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``probs`` ``(R, V)`` (non-negative, any positive row sum) by inverse-CDF sampling.

    Exact categorical sampling like ``torch.multinomial(probs, 1)``, but one uniform number per row and a
    binary search instead of a pass of random draws over the vocabulary. Wide vocabularies are searched in two
    levels: the sums of blocks of about :data:`CDF_BLOCK` entries (a vectorised reduction), the prefix sums of those,
    then the prefix sums inside the one block that holds the draw. That is the same inverse CDF without a
    sequential prefix sum over all ``V`` entries, the slowest pass of sampling on CPU. Zero-probability entries
    are never chosen.
    """
    rows, vocab = probs.shape
    u = torch.rand((rows, 1), generator=generator, device=probs.device, dtype=probs.dtype)
    if vocab <= 4 * CDF_BLOCK or rows < 8:  # one short scan, or too few rows to pay for the extra steps
        cdf = probs.cumsum(dim=-1)
        return _invert(cdf, u * cdf[:, -1:])
    size = _block_size(vocab)
    n_blocks = -(-vocab // size)
    pad = n_blocks * size - vocab
    blocks = (torch.nn.functional.pad(probs, (0, pad)) if pad else probs).reshape(rows, n_blocks, size)
    block_cdf = blocks.sum(dim=-1).cumsum(dim=-1)  # (R, n_blocks)
    target = u * block_cdf[:, -1:]
    block = _invert(block_cdf, target)  # (R,)
    below = block_cdf.gather(1, (block - 1).clamp_(min=0)[:, None]).masked_fill_(block[:, None] == 0, 0.0)
    inner_cdf = blocks[torch.arange(rows, device=probs.device), block].cumsum(dim=-1)  # (R, size)
    return block * size + _invert(inner_cdf, (target - below).clamp_(min=0.0))


@functools.lru_cache(maxsize=64)
def _block_size(vocab: int) -> int:
    """A divisor of ``vocab`` close to :data:`CDF_BLOCK` (no padding copy), else :data:`CDF_BLOCK`."""
    for delta in range(CDF_BLOCK):
        for size in (CDF_BLOCK + delta, CDF_BLOCK - delta):
            if CDF_BLOCK // 2 <= size <= 2 * CDF_BLOCK and vocab % size == 0:
                return size
    return CDF_BLOCK


def _invert(cdf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """First index whose ``cdf`` ``(R, n)`` exceeds ``target`` ``(R, 1)``. The target is kept below the row's
    total, so the index always has positive mass (``cdf`` steps up there) even when rounding put it above."""
    total = cdf[:, -1:]
    target = torch.minimum(target, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def combine_guidance(
    cond: torch.Tensor | Sequence[torch.Tensor], uncond: torch.Tensor, scale: float | Sequence[float]
) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + sum_i w_i (cond_i - uncond)``.

    One condition with ``scale = w`` is the usual CFG (``w = 1`` returns ``cond`` exactly); several
    conditions with weights give the compositional (weighted multi-condition) guidance of 4M.
    """
    if isinstance(cond, torch.Tensor):
        if isinstance(scale, (int, float)):
            if scale == 1.0:
                return cond
            return uncond + scale * (cond - uncond)
        raise GenerationError("one conditional logit tensor takes one float guidance scale")
    if isinstance(scale, (int, float)):
        scale = [float(scale)] * len(cond)
    if len(scale) != len(cond):
        raise GenerationError(f"multi-condition guidance: {len(cond)} conditions but {len(scale)} weights")
    out = uncond.clone()
    for c, w in zip(cond, scale):
        out = out + w * (c - uncond)
    return out


def guidance_bound(
    cond_eps: torch.Tensor | Sequence[torch.Tensor], uncond_eps: torch.Tensor, scale: float | Sequence[float]
) -> torch.Tensor:
    """Error bound of :func:`combine_guidance` ``(cond, uncond, scale)`` when each input is off by at most its
    ``eps`` (same arguments, bounds in place of logits).

    Guidance is the linear combination ``sum_i w_i cond_i + (1 - sum_i w_i) uncond``, so its error is at most
    ``sum_i |w_i| eps_i + |1 - sum_i w_i| eps_uncond``.
    """
    if isinstance(cond_eps, torch.Tensor):
        cond_eps, coefs = [cond_eps], [float(scale)]
    else:
        coefs = [float(scale)] * len(cond_eps) if isinstance(scale, (int, float)) else list(scale)
    coefs.append(1.0 - sum(coefs))  # the unconditional variant, last
    return sum(abs(c) * p for c, p in zip(coefs, [*cond_eps, uncond_eps]))
