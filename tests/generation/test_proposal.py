"""Exact sampling from an int8 proposal table (fourm_core.accel.proposal): the bound holds over the whole
vocabulary (and through guidance), rejection sampling reproduces the float32 distribution, greedy decoding the
float32 argmax, and a broken bound falls back to float32 logits."""

from __future__ import annotations

import logging

import pytest
import torch

from fourm_core.generation import Sampler, TargetConfig
from fourm_core.generation.sampling import combine_guidance, guidance_bound
from fourm_core.accel.proposal import (
    MAX_EPS_OVER_T,
    ProposalBoundError,
    ProposalTable,
    sample_with_proposal,
)

needs_int8 = pytest.mark.requires("int8_kernel", available=ProposalTable.build(torch.randn(8, 4)) is not None,
                                 reason="this torch build has no x86/fbgemm quantized linear kernel")


def _table(V: int = 3000, D: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(V, D, generator=g) * torch.rand(V, 1, generator=g) * 0.1
    w[0] = 0.0  # an all-zero row
    w[1, 0] = 3.0  # a row with one large weight (coarse int8 steps)
    return w


@needs_int8
@pytest.mark.parametrize("kind", ["normal", "large", "outliers", "positive", "tiny"])
def test_bound_holds_for_every_entry(kind):
    w = _table()
    table = ProposalTable.build(w)
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, w.shape[1], generator=g)
    if kind == "large":
        h = h * 50
    elif kind == "outliers":
        h[:, 3] = 80.0
        h[:, 7] = -200.0
    elif kind == "positive":
        h = h.abs() + 1
    elif kind == "tiny":
        h = h * 1e-4
    approx, eps = table.logits(h)
    exact = h @ w.t()
    err = (approx - exact).abs().amax(dim=1)
    assert bool((err <= eps).all()), (err, eps)
    assert bool((eps < 0.5 * exact.abs().amax(dim=1) + 1e-3).all())  # and it is not vacuous
    torch.testing.assert_close(table.exact_at(h, torch.tensor([[5, 9]] * 6)), exact[:, [5, 9]])


def _tv(samples: torch.Tensor, probs: torch.Tensor) -> float:
    freq = torch.bincount(samples, minlength=probs.numel()).double() / samples.numel()
    return 0.5 * float((freq - probs.double()).abs().sum())


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_rejection_sampling_follows_the_exact_distribution(temperature):
    """A proposal off by up to eps in the worst direction (the exact logits raised where they are small and
    lowered where they are large): the sampled frequencies match softmax(exact / T), not the proposal's."""
    V, N = 40, 200_000
    g = torch.Generator().manual_seed(0)
    exact_row = torch.randn(V, generator=g) * 1.5
    eps_value = 1.2 * temperature  # eps / T = 1.2: acceptance down to exp(-2.4), several rounds
    approx_row = exact_row - eps_value * torch.sign(exact_row - exact_row.median())
    approx, eps = approx_row.expand(N, V).contiguous(), torch.full((N,), eps_value * 1.001)  # float slack
    calls = {"full": 0}

    def exact_at(rows, ids):
        return exact_row[ids]

    def exact_full():
        calls["full"] += 1
        return exact_row.expand(N, V)

    ids = sample_with_proposal(approx, eps, exact_at, exact_full, temperature, torch.Generator().manual_seed(3))
    p = torch.softmax(exact_row / temperature, dim=0)
    q = torch.softmax(approx_row / temperature, dim=0)
    assert calls["full"] == 0
    assert _tv(ids, p) < 0.01
    assert _tv(ids, q) > 0.1  # the test can tell the two distributions apart


def test_loose_bound_and_greedy_fall_back_or_certify():
    V = 50
    g = torch.Generator().manual_seed(0)
    exact = torch.randn(4, V, generator=g)
    exact[2, 7] = exact[2, 9] = exact[2].max() + 1.0  # an exact tie: the lowest id wins, like argmax
    noise = (torch.rand(4, V, generator=g) - 0.5) * 0.02
    approx, eps = exact + noise, torch.full((4,), 0.011)
    used_full = []

    def exact_at(rows, ids):
        return exact[rows[:, None], ids]

    def exact_full():
        used_full.append(True)
        return exact

    greedy = sample_with_proposal(approx, eps, exact_at, exact_full, 0.0)
    assert torch.equal(greedy, exact.argmax(dim=1)) and not used_full
    # a bound too loose for the temperature: the exact logits are used
    sample_with_proposal(approx, torch.full((4,), MAX_EPS_OVER_T + 1.0), exact_at, exact_full, 1.0)
    assert used_full
    # a bound that does not hold: an error, never a silently wrong distribution
    with pytest.raises(ProposalBoundError):
        sample_with_proposal(exact + 0.5, eps, exact_at, exact_full, 1.0, torch.Generator().manual_seed(0))


@needs_int8
def test_sampler_greedy_is_identical_with_and_without_int8(tiny_model, pixels):
    cfg = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=10, stop_at_eos=False)
    plain = Sampler(tiny_model, int8_proposals=False)
    fast = Sampler(tiny_model)
    a = plain.generate({"rgb": pixels}, [cfg], seed=0).tokens["caption"]
    b = fast.generate({"rgb": pixels}, [cfg], seed=0).tokens["caption"]
    assert torch.equal(a, b)
    assert fast.backend.proposal_table("caption") is not None
    guided = cfg.replace(guidance=2.5)
    assert torch.equal(plain.generate({"rgb": pixels}, [guided], seed=0).tokens["caption"],
                       fast.generate({"rgb": pixels}, [guided], seed=0).tokens["caption"])


@needs_int8
def test_sampler_falls_back_when_the_bound_breaks(tiny_model, pixels, caplog, monkeypatch):
    fast = Sampler(tiny_model)
    table = fast.backend.proposal_table("caption")
    monkeypatch.setattr(type(table), "logits", lambda self, h: (h @ self.weight.t() + 1.0, torch.full((h.shape[0],), 1e-3)))
    cfg = TargetConfig(modality="caption", temperature=1.0, max_new_tokens=6, stop_at_eos=False)
    with caplog.at_level(logging.WARNING):
        out = fast.generate({"rgb": pixels}, [cfg], seed=0).tokens["caption"]
    assert out.shape == (2, 12)
    assert "int8 proposal logits disabled" in caplog.text
    assert fast.backend.proposal_table("caption") is None
    # top-k / top-p sampling never consults the table
    calls = []
    fresh = Sampler(tiny_model)
    monkeypatch.setattr(type(fresh.backend), "proposal_table", lambda self, name: calls.append(name))
    fresh.generate({"rgb": pixels}, [cfg.replace(top_k=5)], seed=0)
    assert not calls


@needs_int8
def test_proposal_table_follows_the_weights(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model)
    backend = Sampler(model).backend
    first = backend.proposal_table("caption")
    assert backend.proposal_table("caption") is first
    with torch.no_grad():
        model.decoder_embeddings["caption"].output_weight.mul_(2.0)
    assert backend.proposal_table("caption") is not first


@pytest.mark.parametrize("scale", [1.0, 2.5, -0.5, [2.0, -1.0, 0.5]])
def test_guidance_bound_covers_the_error_of_guided_logits(scale):
    """Inputs off by up to their eps (in the worst direction of each coefficient's sign): the guided logits are
    off by at most guidance_bound, and the bound is reached, so it is not loose either."""
    g = torch.Generator().manual_seed(0)
    n = len(scale) if isinstance(scale, list) else 1
    cond = [torch.randn(5, 30, generator=g) for _ in range(n)]
    uncond = torch.randn(5, 30, generator=g)
    eps = [torch.rand(5, generator=g) for _ in range(n + 1)]
    coefs = list(scale) if isinstance(scale, list) else [scale]
    coefs.append(1.0 - sum(coefs))
    moved = [x + torch.sign(torch.tensor(c)) * e[:, None] for x, c, e in zip([*cond, uncond], coefs, eps)]
    one = (lambda parts: parts[0]) if n == 1 else (lambda parts: parts)
    exact = combine_guidance(one(cond), uncond, scale if n > 1 else float(scale))
    off = combine_guidance(one(moved[:-1]), moved[-1], scale if n > 1 else float(scale))
    bound = guidance_bound(one(eps[:-1]), eps[-1], scale if n > 1 else float(scale))
    err = (off - exact).abs().amax(dim=1)
    assert bool((err <= bound * (1 + 1e-5) + 1e-6).all())
    torch.testing.assert_close(err, bound, atol=1e-5, rtol=1e-5)
