"""Seeded random draws of the masker: uniforms, integer ranges, Gamma and Dirichlet samples.

Every draw goes through the optional ``torch.Generator`` handed to the masker (``None``: torch's global RNG), so
a data-loader worker that seeds its own generator gets masks that depend on that seed only, and masking never
consumes the global random stream when a generator is given.

Why not ``torch.distributions.Dirichlet`` (checked against torch 2.14):

* ``Dirichlet.sample`` / ``rsample`` take no ``generator`` argument: they always draw from the global RNG, so
  per-call / per-worker seeding would be impossible (``Gamma.rsample`` accepts one, the Dirichlet does not).
* It rejects a concentration of 0, which the masker uses for "this modality gets no budget" (an exact 0 share).
* It samples the Gamma variates in linear space and normalises them. The sparse mixtures use small alphas
  (0.01 and below), where Gamma samples underflow: at alpha 0.01 about a third of float32 draws are clamped to
  the smallest normal float, and at alpha 0.001 a few percent of rows come out *exactly uniform* (every entry
  underflowed to the same value; float64 too), turning a near one-hot split into an even one.

:func:`_log_gamma` therefore samples ``log Gamma(alpha, 1)`` directly (Marsaglia-Tsang, with
``Gamma(a) = Gamma(a + 1) * U^(1/a)`` applied in log space for ``a < 1``, which is exact however small ``a`` is),
and :func:`_dirichlet` normalises with a softmax over those logs.
"""

from __future__ import annotations

import math

import torch


def _rand(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 draws of ``shape``."""
    return torch.rand(shape, generator=gen, device=device)


def _randint(lo: int, hi: int, n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` integers uniform in ``[lo, hi]`` (inclusive); no draw when ``lo == hi``."""
    if lo == hi:
        return torch.full((n,), lo, dtype=torch.long, device=device)
    return torch.randint(lo, hi + 1, (n,), generator=gen, device=device)


def _log_gamma(alpha: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """log of Gamma(alpha, 1) samples (alpha > 0), Marsaglia-Tsang, vectorised; exact in log space for tiny alpha."""
    dev = alpha.device
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha).double()
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(64):
        x = torch.randn(a.shape, generator=gen, device=dev, dtype=torch.float64)
        u = torch.rand(a.shape, generator=gen, device=dev, dtype=torch.float64).clamp_min(1e-300)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = todo & ok
        out = torch.where(take, torch.log(d) + torch.log(v.clamp_min(1e-300)), out)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
    out = torch.where(todo, torch.log(d), out)  # practically unreachable (acceptance > 95 % per try)
    u = torch.rand(a.shape, generator=gen, device=dev, dtype=torch.float64).clamp_min(1e-300)
    return torch.where(boost, out + torch.log(u) / alpha.double().clamp_min(1e-300), out)


def _dirichlet(alpha: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Dirichlet proportions per row; entries with alpha 0 get exactly 0; rows of zeros stay zero. (B, M)"""
    pos = alpha > 0
    logg = _log_gamma(torch.where(pos, alpha, torch.ones_like(alpha)), gen)
    logg = torch.where(pos, logg, torch.full_like(logg, -math.inf))
    p = torch.softmax(logg, dim=-1).float()
    # tiny alphas underflow most shares to exactly 0 in float32; keep every eligible modality strictly positive so
    # that budget the dominant modality cannot hold still flows to the others (alpha-0 entries stay exactly 0)
    p = torch.where(pos, p.clamp_min(1e-30), torch.zeros_like(p))
    return torch.where(pos.any(-1, keepdim=True), p, torch.zeros_like(p))
