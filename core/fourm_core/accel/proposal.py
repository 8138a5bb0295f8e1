"""Exact one-token sampling from a large output vocabulary with an int8 *proposal* table.

A decoding step on CPU at batch 1 is memory-bound: the float32 output table of a 30 000-word text vocabulary
is 31 MB, read once per token, and it pushes the decoder's weights and the cross-attention keys/values out of
the last-level cache, so every following token reads those from memory too. An int8 copy of the table
(8 MB, one scale per row), read by fbgemm's dynamic-quantized linear kernel, is a quarter of that traffic, and
the whole working set of a step can then stay in the cache.

The int8 logits ``l'`` are *not* used as if they were the model's logits. Each comes with a bound ``eps``
with ``|l_v - l'_v| <= eps`` for every vocabulary entry ``v`` (:meth:`ProposalTable.logits`), and the token
is drawn by rejection sampling: propose ``x ~ softmax(l' / T)``, compute the exact float32 logit ``l_x``
(one row of the table), accept with probability ``exp((l_x - l'_x - eps) / T)``. Since
``exp(l_v / T) <= Z' exp(eps / T) q(v)`` for every ``v``, an accepted ``x`` is distributed exactly as
``softmax(l / T)`` (standard rejection sampling); the acceptance rate is at least ``exp(-2 eps / T)``.
Greedy decoding takes the exact argmax among the candidates whose int8 logit lies within ``2 eps`` of the
best one. Whatever the bound cannot certify (top-k / top-p filtering, a bound too loose for the
temperature, too many greedy candidates) falls back to the exact float32 logits, so results never depend
on the int8 copy beyond float32 summation order.

The bound (per row, from the row ``h`` fed to the table): activations are quantized per tensor to 7-bit
steps ``s_x <= max((max(h, 0) - min(h, 0)) / 127, 1e-4)`` (tiny steps are raised to ~6.1e-5), weights per row symmetrically with steps ``s_v =
max|w_v| / 127``; with round-to-nearest ``|h - h'| <= s_x / 2`` and ``|w_v - w'_v| <= s_v / 2``, so
``|h.w_v - h'.w'_v| <= s_x/2 ||w_v||_1 + s_v/2 ||h'||_1`` and ``||h'||_1 <= ||h||_1 + D s_x / 2``. The
integer products are exact; a relative slack covers the float32 rescaling. Every proposal checks the bound
on the tokens it evaluates exactly; a violation (a kernel that quantizes differently) disables the int8
table for good, with a warning, and that step uses the exact logits.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

#: Relative slack of the bound (float32 rescaling of the integer products, summation order of the exact logits).
_REL_SLACK = 1e-3
#: Floor of the activation quantization step in the bound (PyTorch's choose_qparams raises smaller steps to 6.1e-5).
_MIN_ACT_STEP = 1e-4
#: Candidates drawn per round of rejection sampling (each costs one exact dot product of length D).
CANDIDATES = 8
#: Rounds of CANDIDATES proposals before a row falls back to the exact logits (never reached in practice).
MAX_ROUNDS = 16
#: The proposal is used only where ``eps / T`` stays below this (acceptance >= exp(-2 * this)).
MAX_EPS_OVER_T = 2.0
#: Greedy decoding: int8 candidates kept per row (more ties within 2 eps → exact logits).
GREEDY_CANDIDATES = 16


def _quantized_ops_available() -> bool:
    try:
        return torch.backends.quantized.engine in ("x86", "fbgemm") and hasattr(torch.ops.quantized, "linear_dynamic")
    except Exception:  # a build without quantized kernels
        return False


class ProposalBoundError(RuntimeError):
    """The int8 logits broke their error bound (a quantization kernel that behaves differently)."""


class ProposalTable:
    """int8 copy of an output table ``weight`` ``(V, D)`` with the data of the error bound.

    ``logits(h)`` → ``(approx (R, V), eps (R,))``; ``exact_at(h, ids)`` → exact float32 logits ``(R, K)`` of the
    ids ``(R, K)``. Build with :meth:`build`, which returns ``None`` where the kernels are missing.
    """

    def __init__(self, weight: torch.Tensor, packed, row_l1_max: float, step_max: float):
        self.weight = weight  # (V, D) float32, the model's table (rows read for exact logits)
        self.packed = packed
        self.row_l1_max = row_l1_max
        self.step_max = step_max

    @classmethod
    def build(cls, weight: torch.Tensor) -> ProposalTable | None:
        if weight.device.type != "cpu" or weight.dtype != torch.float32 or not _quantized_ops_available():
            return None
        w = weight.detach().contiguous()
        steps = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (V,)
        try:
            with warnings.catch_warnings():  # quantized tensors are deprecated for new code; the kernel is not
                warnings.simplefilter("ignore")
                q = torch.quantize_per_channel(w, steps.double(), torch.zeros(w.shape[0], dtype=torch.long), 0,
                                               torch.qint8)
                packed = torch.ops.quantized.linear_prepack(q, None)
        except Exception as exc:  # pragma: no cover - depends on the torch build
            log.info("int8 proposal table unavailable (%s); using exact float32 logits", exc)
            return None
        # The bound must hold for the values actually packed: measure the rounding of the quantized copy.
        deq = q.dequantize()
        quant_err = (deq - w).abs().amax(dim=1)  # <= steps / 2 up to float rounding
        step_max = float(torch.maximum(steps, 2.0 * quant_err).max())
        return cls(w, packed, row_l1_max=float(w.abs().sum(dim=1).max()), step_max=step_max)

    def logits(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 logits ``(R, V)`` of float32 rows ``h`` ``(R, D)`` and the bound ``eps`` ``(R,)`` on their error."""
        approx = torch.ops.quantized.linear_dynamic(h, self.packed, True)
        # 7-bit activation steps (reduce_range), per tensor: the whole (R, D) block shares one step
        # (the kernel raises steps below ~6.1e-5 to that value, widening the range: use a floor above it)
        lo, hi = torch.aminmax(h)
        s_x = max((max(float(hi), 0.0) - min(float(lo), 0.0)) / 127.0, _MIN_ACT_STEP)
        l1 = torch.linalg.vector_norm(h, ord=1, dim=1)  # (R,)
        # 0.5 s_x L1max + 0.5 s_max (||h||_1 + D s_x / 2), times (1 + slack), plus slack s_max ||h||_1 + 1e-6:
        # one multiply-add on the row norms
        per_l1 = self.step_max * (0.5 * (1.0 + _REL_SLACK) + _REL_SLACK)
        const = (0.5 * s_x * self.row_l1_max + 0.25 * self.step_max * h.shape[1] * s_x) * (1.0 + _REL_SLACK) + 1e-6
        return approx, l1.mul_(per_l1).add_(const)

    def exact_at(self, h: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Exact float32 logits ``(R, K)`` of rows ``h`` ``(R, D)`` for token ids ``(R, K)``."""
        rows = self.weight[ids]  # (R, K, D)
        return torch.bmm(rows, h[:, :, None]).squeeze(-1)


def sample_with_proposal(approx: torch.Tensor, eps: torch.Tensor,
                         exact_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         exact_full: Callable[[], torch.Tensor], temperature: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row, distributed exactly as ``softmax(exact / temperature)`` (greedy at 0).

    ``approx`` ``(R, V)``: logits within ``eps`` ``(R,)`` of the exact ones; ``exact_at(rows (P,), ids (P, K))``
    → exact logits of those ids for those rows (indices into the R rows); ``exact_full()`` → all exact logits
    ``(R, V)`` (the fallback). Raises
    :class:`ProposalBoundError` when an exact logit lies farther than ``eps`` from its approximation.
    """
    if temperature <= 1e-10:
        return _greedy(approx, eps, exact_at, exact_full)
    R, V = approx.shape
    dev = approx.device
    if bool((eps / temperature > MAX_EPS_OVER_T).any()):
        return _sample_exact(exact_full(), temperature, generator)
    # proposal CDF (u is scaled by its last entry, which is 1 up to rounding); softmax is one fused kernel
    cdf = torch.softmax(approx if temperature == 1.0 else approx / temperature, dim=1).cumsum_(dim=1)  # (R, V)
    out = torch.full((R,), -1, dtype=torch.long, device=dev)
    pending = torch.arange(R, device=dev)
    p_approx, p_cdf, p_eps = approx, cdf, eps  # the pending rows' data (all rows in the first round)
    for _ in range(MAX_ROUNDS):
        u = torch.rand((pending.numel(), CANDIDATES), generator=generator, device=dev, dtype=cdf.dtype)
        ids = torch.searchsorted(p_cdf, u * p_cdf[:, -1:], right=True).clamp_(max=V - 1)  # (P, K)
        exact = exact_at(pending, ids)  # (P, K)
        diff = exact - p_approx.gather(1, ids)
        if bool((diff.abs().amax(dim=1) > p_eps).any()):
            raise ProposalBoundError(f"int8 logits off by {float(diff.abs().max()):.3g}, bound {float(p_eps.max()):.3g}")
        accept_p = torch.exp((diff - p_eps[:, None]) / temperature)
        accepted = torch.rand(accept_p.shape, generator=generator, device=dev, dtype=accept_p.dtype) < accept_p
        first = accepted.to(torch.uint8).argmax(dim=1)  # first accepted candidate of each row (0 if none)
        has = accepted.gather(1, first[:, None]).squeeze(1)
        chosen = ids.gather(1, first[:, None]).squeeze(1)
        if bool(has.all()):
            out[pending] = chosen
            return out
        out[pending[has]] = chosen[has]
        keep = ~has
        pending, p_approx, p_cdf, p_eps = pending[keep], p_approx[keep], p_cdf[keep], p_eps[keep]
    full = exact_full()  # rows that rejected MAX_ROUNDS * CANDIDATES proposals in a row
    out[pending] = _sample_exact(full[pending], temperature, generator)
    return out


def sample_from_table(table: ProposalTable, hidden: torch.Tensor, combine: Callable[[torch.Tensor], torch.Tensor],
                      combine_bound: Callable[[torch.Tensor], torch.Tensor], exact_full: Callable[[], torch.Tensor],
                      temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per sample from ``table``'s int8 logits of ``hidden`` ``(kB, D)``, corrected to the exact
    float32 distribution of the guided logits (:func:`sample_with_proposal`).

    ``hidden`` stacks ``k`` guidance variants of ``B`` samples, variant after variant. ``combine`` maps
    per-variant values ``(kB, ...)`` to the guided ``(B, ...)`` ones (a linear combination of the variants),
    ``combine_bound`` the per-row bounds ``(kB,)`` to the bound of that combination ``(B,)``; they apply to the
    proposal, the bound and the exact logits alike. ``exact_full()`` → the guided exact logits ``(B, V)``."""
    approx, eps = table.logits(hidden)  # (kB, V), (kB,)
    approx, eps = combine(approx), combine_bound(eps)
    B = approx.shape[0]
    k = hidden.shape[0] // B

    def exact_at(rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h = hidden[torch.cat([rows + j * B for j in range(k)])] if k > 1 else hidden[rows]
        return combine(table.exact_at(h, ids if k == 1 else ids.repeat(k, 1)))

    return sample_with_proposal(approx, eps, exact_at, exact_full, temperature, generator)


def _sample_exact(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    # the generation's own float32 sampler (imported here: fourm_core.generation imports this package)
    from ..generation.sampling import sample_tokens

    return sample_tokens(logits, temperature, 0, 0.0, generator)[0]


def _greedy(approx: torch.Tensor, eps: torch.Tensor, exact_at, exact_full) -> torch.Tensor:
    """Exact argmax: every id whose exact logit could be the maximum has an int8 logit within ``2 eps`` of the
    int8 maximum; those candidates (if few) are compared exactly, lowest id first on ties (as ``argmax``)."""
    R, V = approx.shape
    k = min(GREEDY_CANDIDATES, V)
    top, ids = approx.topk(k, dim=1)  # (R, k), descending
    near = top >= top[:, :1] - 2.0 * eps[:, None]
    if k < V and bool(near[:, -1].any()):  # more candidates than kept: compare everything exactly
        return exact_full().argmax(dim=1)
    ids, order = ids.sort(dim=1)  # ascending ids: argmax below keeps the lowest id among exact ties
    near = near.gather(1, order)
    exact = exact_at(torch.arange(R, device=approx.device), ids)
    prop = approx.gather(1, ids)
    if bool(((exact - prop).abs() > eps[:, None]).any()):
        raise ProposalBoundError("int8 logits broke their bound on a greedy candidate")
    exact = exact.masked_fill(~near, float("-inf"))
    return ids.gather(1, exact.argmax(dim=1, keepdim=True)).squeeze(1)
