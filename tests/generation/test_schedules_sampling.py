"""Schedules, filtering, categorical sampling and the guidance combination."""

from __future__ import annotations

import math

import pytest
import torch

from fourm_core.generation import (
    GenerationError,
    combine_guidance,
    filter_logits,
    sample_tokens,
    temperature_schedule,
    token_schedule,
)
from fourm_core.generation.sampling import _invert, sample_categorical


@pytest.mark.parametrize("n,steps", [(196, 8), (16, 8), (5, 8), (1, 3), (100, 1), (17, 4)])
@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_token_schedule_sums_and_never_skips(n, steps, kind):
    counts = token_schedule(n, steps, kind)
    assert sum(counts) == n
    assert len(counts) == min(n, steps)
    assert all(c >= 1 for c in counts)


def test_cosine_schedule_commits_few_tokens_first():
    counts = token_schedule(196, 8, "cosine")
    assert counts[0] < counts[-1]
    remaining_after_first = 196 - counts[0]
    assert remaining_after_first == math.floor(196 * math.cos(math.pi / 2 / 8))
    assert token_schedule(8, 4, "linear") == [2, 2, 2, 2]


def test_bad_schedules_raise():
    with pytest.raises(GenerationError, match="unknown token schedule 'zigzag'"):
        token_schedule(10, 2, "zigzag")
    with pytest.raises(GenerationError, match="num_steps"):
        token_schedule(10, 0)
    with pytest.raises(GenerationError, match="onex:MIN:POWER"):
        temperature_schedule(1.0, [1, 1], "onex:bad")


def test_temperature_schedules():
    counts = [2, 2, 4]
    assert temperature_schedule(2.0, counts, "constant") == [2.0, 2.0, 2.0]
    lin = temperature_schedule(2.0, counts, "linear")
    assert lin[0] == 2.0 and lin[1] == pytest.approx(1.5) and lin[2] == pytest.approx(1.0)
    onex = temperature_schedule(3.0, counts, "onex:1.0:1.0")
    assert onex[0] == 3.0 and onex[-1] == pytest.approx(2.0)


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    k2 = filter_logits(logits, top_k=2)
    assert torch.isfinite(k2).tolist() == [[True, True, False, False]]
    p = filter_logits(logits, top_p=0.7)  # 0.5 < 0.7, 0.5+0.3 >= 0.7: keep the first two
    assert torch.isfinite(p).tolist() == [[True, True, False, False]]
    p1 = filter_logits(logits, top_p=0.4)  # the most likely token always stays
    assert torch.isfinite(p1).tolist() == [[True, False, False, False]]
    frac = filter_logits(logits, top_k=0.5)
    assert torch.isfinite(frac).sum() == 2
    assert torch.equal(filter_logits(logits), logits)


def test_sample_categorical_matches_probabilities():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).repeat(100_000, 1)
    ids = sample_categorical(probs, g)
    freq = torch.bincount(ids, minlength=4).float() / len(ids)
    assert freq[1] == 0  # zero-probability entries are never chosen
    assert torch.allclose(freq, probs[0], atol=0.01)


def _one_level(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    cdf = probs.cumsum(-1)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)


@pytest.mark.parametrize("vocab", [8192, 1000, 30011])  # block 128; a divisor (125); prime: padded blocks
def test_two_level_sampling_is_the_inverse_cdf(vocab):
    """The block-wise search picks the index one prefix sum over the whole row picks for the same uniform
    number (float64, so that no draw lands within rounding of a boundary), and so the same distribution."""
    g = torch.Generator().manual_seed(vocab)
    probs = torch.rand(64, vocab, generator=g, dtype=torch.float64) ** 8  # peaked rows
    probs[:, 5:300] = 0.0  # whole zero blocks and zeros across block edges
    probs[::3, -1] = 0.0
    u = torch.rand((64, 1), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ids = sample_categorical(probs, torch.Generator().manual_seed(1))
    assert torch.equal(ids, _one_level(probs, u))
    assert bool((probs.gather(1, ids[:, None]) > 0).all())


def test_two_level_sampling_matches_probabilities_and_skips_zeros():
    g = torch.Generator().manual_seed(0)
    vocab = 700  # 7 blocks of 100
    base = torch.zeros(vocab)
    base[[0, 99, 100, 350, 699]] = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25])
    ids = sample_categorical(base.repeat(100_000, 1), g)
    freq = torch.bincount(ids, minlength=vocab).float() / len(ids)
    assert set(torch.nonzero(freq).flatten().tolist()) == {0, 99, 100, 350, 699}
    assert torch.allclose(freq, base, atol=0.01)


def test_sampling_never_picks_zero_mass_when_the_draw_rounds_to_the_total():
    """Draws at the very top of [0, 1) must not fall past the last positive entry (rounding of u * total)."""
    probs = torch.zeros(16, 2048)
    probs[:, 3] = 1e-30  # a tiny first entry, then the rest of the mass
    probs[:, 1000] = 1.0
    probs[:, 1500:] = 0.0
    ids = sample_categorical(probs, torch.Generator().manual_seed(0))
    assert set(ids.tolist()) <= {3, 1000}
    # a target at or above the row total (what rounding of u * total can give) still lands on positive mass
    cdf = probs.cumsum(-1)
    assert set(_invert(cdf, cdf[:, -1:] * (1 + 2**-20)).tolist()) == {1000}
    assert set(_invert(cdf, cdf[:, -1:]).tolist()) == {1000}


def test_sample_tokens_greedy_and_seeded():
    logits = torch.randn(3, 5, 50)
    ids, probs = sample_tokens(logits, temperature=0.0)
    assert torch.equal(ids, logits.argmax(-1)) and torch.all(probs == 1)
    a = sample_tokens(logits, 1.0, generator=torch.Generator().manual_seed(3))
    b = sample_tokens(logits, 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 5)
    top1, _ = sample_tokens(logits, 1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1, logits.argmax(-1))


def test_combine_guidance():
    cond, uncond = torch.randn(2, 7), torch.randn(2, 7)
    assert torch.equal(combine_guidance(cond, uncond, 1.0), cond)
    assert torch.allclose(combine_guidance(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
    c2 = torch.randn(2, 7)
    multi = combine_guidance([cond, c2], uncond, [2.0, 0.5])
    assert torch.allclose(multi, uncond + 2 * (cond - uncond) + 0.5 * (c2 - uncond))
    with pytest.raises(GenerationError, match="2 conditions but 1 weights"):
        combine_guidance([cond, c2], uncond, [1.0])
