"""Per-sample token budgets: how many input and target tokens each modality of each sample gets.

Random masking: per sample a mixture component is drawn (by weight), a total input budget is drawn from
``input_tokens`` and split over the modalities by a Dirichlet draw of the component's input alphas (modalities
with alpha 0, absent, or unusable get exactly 0), starting from each modality's ``min_tokens`` and never above
``min(max_tokens, tokens present)``; budget a modality cannot hold goes to the others by their Dirichlet share
(:func:`_allocate`). Sequences then span-mask their input within their budget; with ``fill_budget`` the
input budget a sequence did not use is handed to the image-like modalities with room. Target budgets are split
the same way from ``target_tokens`` over the room left (image-like: tokens not input; sequences: their span
target), or, with ``target_tokens: null``, every such token is a target.

Transfer masking draws nothing: inputs get all their tokens, targets all of theirs, the rest 0.

All tensors are ``(B, M)`` over the masker's modalities unless noted.
"""

from __future__ import annotations

import math

import attrs
import torch

from .draws import _dirichlet, _rand, _randint


@attrs.frozen
class BudgetTables:
    """A masker's constants: mixture tables ``(K, M)`` over K components and per-modality vectors ``(M,)``."""

    weights: torch.Tensor  # (K,) float64 component weights
    alpha_in: torch.Tensor  # (K, M) float64 input alphas (0 where the modality cannot be input)
    alpha_tg: torch.Tensor  # (K, M) float64 target alphas (0 where the modality cannot be a target)
    keep_code: torch.Tensor  # (K, M) long: index into KEEP_SCHEMES (random, all, binary)
    full_input: torch.Tensor  # (K, M) bool: always fully visible, outside the budget
    can_input: torch.Tensor  # (M,) bool
    can_target: torch.Tensor  # (M,) bool
    min_tokens: torch.Tensor  # (M,) long
    max_tokens: torch.Tensor  # (M,) long
    span_masked: torch.Tensor  # (M,) bool: sequence-like (input chosen by span masking)
    transfer_in: torch.Tensor  # (M,) bool: transfer masking inputs
    transfer_tg: torch.Tensor  # (M,) bool: transfer masking targets

    def to(self, device: torch.device) -> BudgetTables:
        return BudgetTables(**{f.name: getattr(self, f.name).to(device) for f in attrs.fields(BudgetTables)})


@attrs.frozen
class InputBudgets:
    """The input budgets of a batch, and the draws the fill and target stages reuse (random masking only)."""

    budget: torch.Tensor  # (B, M) long
    keep_prob: torch.Tensor  # (B, M) float: span masking keep probability
    full_input: torch.Tensor  # (B, M) bool
    component: torch.Tensor | None = None  # (B,) drawn mixture component
    share: torch.Tensor | None = None  # (B, M) Dirichlet proportions
    total: torch.Tensor | None = None  # (B,) drawn total input budget
    capacity: torch.Tensor | None = None  # (B, M) most input tokens each modality can take


def transfer_inputs(tab: BudgetTables, avail: torch.Tensor, length: torch.Tensor) -> InputBudgets:
    """Transfer masking: the inputs present are fully visible (keep probability 1); nothing is drawn."""
    bsz, nm = length.shape
    return InputBudgets(budget=torch.where(tab.transfer_in & avail, length, 0),
                        keep_prob=torch.ones(bsz, nm, device=length.device),
                        full_input=tab.transfer_in[None].expand(bsz, nm))


def draw_inputs(tab: BudgetTables, avail: torch.Tensor, length: torch.Tensor, input_tokens: tuple[int, int],
                gen: torch.Generator | None) -> InputBudgets:
    """Random masking: draw the component, the input split and total, and the keep probabilities (in that
    order: the draw order is part of the seeded behaviour)."""
    bsz, nm = length.shape
    dev = length.device
    comp = torch.multinomial(tab.weights, bsz, replacement=True, generator=gen).to(dev)
    a_in = tab.alpha_in[comp] * (avail & tab.can_input)
    full_in = tab.full_input[comp] & avail
    cap_in = torch.minimum(tab.max_tokens, length) * (avail & tab.can_input)
    p_in = _dirichlet(a_in, gen)
    total_in = _randint(*input_tokens, bsz, gen, dev)
    base = torch.minimum(tab.min_tokens, cap_in) * (a_in > 0)
    in_budget = _allocate(total_in, p_in, base, cap_in, gen)
    in_budget = torch.where(full_in, length, in_budget)
    u = _rand((bsz, nm), gen, dev)
    code = tab.keep_code[comp]  # random: keep probability u; all: 1; binary: 0 or 1
    keep_prob = torch.where(code == 0, u, torch.where(code == 1, torch.ones_like(u), (u < 0.5).float()))
    keep_prob = torch.where(full_in, torch.ones_like(u), keep_prob)
    return InputBudgets(budget=in_budget, keep_prob=keep_prob, full_input=full_in, component=comp, share=p_in,
                        total=total_in, capacity=cap_in)


def fill_inputs(tab: BudgetTables, inp: InputBudgets, in_used: torch.Tensor,
                gen: torch.Generator | None) -> torch.Tensor:
    """Input budget a sequence did not use goes to image-like modalities with room (sequences and full inputs
    keep what they have)."""
    seq_like = tab.span_masked
    cap_fill = torch.where(seq_like, in_used, inp.capacity)
    cap_fill = torch.where(inp.full_input, inp.budget, cap_fill)
    base = torch.where(seq_like, in_used, inp.budget)
    in_fill = _allocate(inp.total + (inp.budget * inp.full_input).sum(1), inp.share, base, cap_fill, gen)
    return torch.where(seq_like, inp.budget, in_fill)


def transfer_targets(tab: BudgetTables, avail: torch.Tensor, length: torch.Tensor,
                     tgt_len: torch.Tensor) -> torch.Tensor:
    """Transfer masking: the targets present are whole (a sequence's full span target)."""
    return torch.where(tab.transfer_tg & avail, torch.where(tab.span_masked, tgt_len, length), 0)


def draw_targets(tab: BudgetTables, inp: InputBudgets, in_budget: torch.Tensor, avail: torch.Tensor,
                 length: torch.Tensor, tgt_len: torch.Tensor, target_tokens: tuple[int, int] | None,
                 gen: torch.Generator | None) -> torch.Tensor:
    """Random masking: split the drawn target total over the room left after the inputs (``target_tokens``
    ``None``: all of that room, for modalities with a positive target alpha)."""
    a_tg = tab.alpha_tg[inp.component] * (avail & tab.can_target)
    img_room = (length - in_budget).clamp_min(0)
    cap_tg = torch.minimum(tab.max_tokens, torch.where(tab.span_masked, tgt_len, img_room)) * (avail & tab.can_target)
    if target_tokens is None:
        return cap_tg * (a_tg > 0)
    p_tg = _dirichlet(a_tg, gen)
    total_tg = _randint(*target_tokens, length.shape[0], gen, length.device)
    base = torch.minimum(tab.min_tokens, cap_tg) * (a_tg > 0)
    return _allocate(total_tg, p_tg, base, cap_tg, gen)


def _allocate(total: torch.Tensor, p: torch.Tensor, base: torch.Tensor, cap: torch.Tensor,
              gen: torch.Generator | None) -> torch.Tensor:
    """Split ``total`` (B,) tokens over modalities by proportions ``p`` (B, M), starting from ``base`` and never
    exceeding ``cap``. Budget a modality cannot hold goes to the others with room, by their share."""
    budget = torch.minimum(base, cap).clamp_min(0)
    m = p.shape[1]
    for _ in range(2 * m + 4):
        room = cap - budget
        w = p * (room > 0)
        ws = w.sum(1)
        excess = (total - budget.sum(1)).clamp_min(0)
        active = (excess > 0) & (ws > 0)
        if not bool(active.any()):
            break
        share = torch.floor(excess[:, None] * w / ws.clamp_min(1e-12)[:, None]).long()
        budget = budget + torch.minimum(share, room) * active[:, None]
        # hand out what flooring left, one token each to the modalities drawn by a Gumbel top-k over the shares
        room = cap - budget
        w = p * (room > 0)
        excess = (total - budget.sum(1)).clamp_min(0) * active
        gumbel = -torch.log(-torch.log(_rand(tuple(w.shape), gen, w.device).clamp(1e-12, 1 - 1e-7)))
        score = torch.where(w > 0, torch.log(w.clamp_min(1e-30)) + gumbel, torch.full_like(w, -math.inf))
        order = torch.argsort(score, dim=1, descending=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(m, device=w.device).expand_as(order))
        budget = budget + ((rank < excess[:, None]) & (w > 0)).long()
    return budget
