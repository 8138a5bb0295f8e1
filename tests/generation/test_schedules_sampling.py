"""Schedules, filtering, categorical sampling and the guidance combination."""

from __future__ import annotations

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


@pytest.mark.parametrize("n,steps", [(196, 8), (16, 8), (5, 8), (1, 3), (100, 1), (17, 4), (10, 16), (16, 20)])
@pytest.mark.parametrize("kind", ["cosine", "linear", "cosine_late"])
def test_token_schedule_sums_and_has_no_negative_step(n, steps, kind):
    """Every schedule sums to N. ``linear`` and ``cosine_late`` never have an empty step (at most N steps);
    ``cosine`` has exactly ``steps`` entries, some possibly 0 (as the released 4M sampler's), never < 0."""
    counts = token_schedule(n, steps, kind)
    assert sum(counts) == n
    assert all(c >= 0 for c in counts)
    if kind == "cosine":
        assert len(counts) == steps
    else:
        assert len(counts) == min(n, steps) and all(c >= 1 for c in counts)


# The released 4M sampler's cosine: s_i = 0.5 (1 + cos(pi i / T)), i = 0..T-1; step i < T-1 commits
# round(N (s_i - s_{i+1})), the last one the rest. N=16, T=4: s = 1, 0.8536, 0.5, 0.1464, so
# 16 x (0.1464, 0.3536, 0.3536) = 2.34, 5.66, 5.66 -> 2, 6, 6, and the rest 2.
@pytest.mark.parametrize("n,steps,expected", [
    (16, 4, [2, 6, 6, 2]),
    (16, 5, [2, 4, 5, 4, 1]),  # s = 1, .9045, .6545, .3455, .0955: 1.53, 4.0, 4.94, 4.0 -> 2, 4, 5, 4; rest 1
    (196, 8, [7, 21, 32, 38, 38, 32, 21, 7]),  # the released sampler's output for this call
    (32, 4, [5, 11, 11, 5]),
    (7, 3, [2, 3, 2]),  # 7 x (0.25, 0.5): 1.75 -> 2, and 3.4999999999999996 in float64 (cos(pi/3) > 0.5) -> 3
    (100, 1, [100]),
    # rounded counts 1, 2, 3, 3, 3, 3, 2 add up to 17 > 16: the released sampler's last step would be -1;
    # the excess comes off the latest steps
    (16, 8, [1, 2, 3, 3, 3, 3, 1, 0]),
    (10, 16, [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]),  # more steps than tokens: empty steps stay
])
def test_cosine_token_schedule_is_the_released_samplers(n, steps, expected):
    assert token_schedule(n, steps, "cosine") == expected


# Hand-computed: cosine_late keeps floor(N cos(pi/2 t/T)) tokens masked after step t, e.g. N=16, T=4:
# 16 cos(22.5 deg) = 14.78 -> 14, 16 cos(45 deg) = 11.31 -> 11, 16 cos(67.5 deg) = 6.12 -> 6, then 0, so
# the counts are 16-14, 14-11, 11-6, 6-0 = [2, 3, 5, 6] (rounding would give 15, 11, 6: [1, 4, 5, 6]).
@pytest.mark.parametrize("n,steps,expected", [
    (16, 4, [2, 3, 5, 6]),
    (16, 5, [1, 3, 3, 5, 4]),  # remaining 15, 12, 9, 4
    (16, 8, [1, 1, 1, 2, 3, 2, 3, 3]),  # remaining 15, 14, 13, 11, 8, 6, 3
    (17, 4, [2, 3, 6, 6]),  # remaining 15, 12, 6
    (196, 8, [4, 11, 19, 24, 30, 33, 37, 38]),  # remaining 192, 181, 162, 138, 108, 75, 38
    (32, 4, [3, 7, 10, 12]),  # remaining 29, 22, 12
    (7, 3, [1, 3, 3]),  # remaining 6, 3
    (16, 2, [5, 11]),  # remaining 11
    (4, 2, [2, 2]),  # remaining 2 (4 cos 45 deg = 2.83)
    (100, 1, [100]),
    # a zero step borrows one token from the largest, latest step: remaining 5, 5, 4, 3, 1 gives
    # [1, 0, 1, 1, 2, 1] -> [1, 1, 1, 1, 1, 1]
    (6, 6, [1, 1, 1, 1, 1, 1]),
    (5, 8, [1, 1, 1, 1, 1]),  # steps capped at N; [1, 0, 2, 1, 1] borrows from the 2
    (16, 20, [1] * 16),
])
def test_cosine_late_token_schedule_literal_values(n, steps, expected):
    """The floor-cosine schedule (fourm's former ``cosine``, kept as ``cosine_late``), step by step; catches
    ``round``/``ceil`` instead of ``floor``, sine instead of cosine, a shifted step index, the steps cap, and
    the borrowing for empty steps."""
    assert token_schedule(n, steps, "cosine_late") == expected


@pytest.mark.parametrize("n,steps,expected", [
    (16, 4, [4, 4, 4, 4]),
    (10, 4, [3, 3, 2, 2]),  # the remainder goes to the first steps
    (17, 5, [4, 4, 3, 3, 3]),
    (16, 3, [6, 5, 5]),
    (3, 8, [1, 1, 1]),  # trailing empty steps dropped
    (7, 1, [7]),
    (196, 8, [25, 25, 25, 25, 24, 24, 24, 24]),  # the released sampler's output for this call
    (10, 16, [1] * 10),
])
def test_linear_token_schedule_literal_values(n, steps, expected):
    assert token_schedule(n, steps, "linear") == expected


def test_token_schedule_edge_cases():
    assert token_schedule(0, 4, "cosine") == [] and token_schedule(0, 4, "linear") == []
    assert token_schedule(1, 1) == [1] and token_schedule(5, 1) == [5]
    assert token_schedule(16, 4) == [2, 6, 6, 2]  # cosine is the default


def test_bad_schedules_raise():
    with pytest.raises(GenerationError, match="unknown token schedule 'zigzag'; choose one of cosine, linear, cosine_late"):
        token_schedule(10, 2, "zigzag")
    with pytest.raises(GenerationError, match="num_steps must be an int >= 1, got 0"):
        token_schedule(10, 0)
    with pytest.raises(GenerationError, match="num_tokens must be >= 0, got -1"):
        token_schedule(-1, 2)
    with pytest.raises(GenerationError, match="onex:MIN:POWER"):
        temperature_schedule(1.0, [1, 1], "onex:bad")
    with pytest.raises(GenerationError, match="onex:MIN:POWER"):
        temperature_schedule(1.0, [1, 1], "onex:0.5")
    with pytest.raises(GenerationError, match="unknown temperature schedule 'cold'"):
        temperature_schedule(1.0, [1, 1], "cold")
    with pytest.raises(GenerationError, match="temperature must be >= 0, got -0.5"):
        temperature_schedule(-0.5, [1, 1])
    assert temperature_schedule(0.0, [1, 1]) == [0.0, 0.0]  # 0 (greedy) is allowed


def test_temperature_schedules_literal_values():
    """The released 4M sampler's schedules. linear: T first, then T (N - c) / N for the tokens c committed
    before the step. onex:MIN:POWER: y = 1/x^POWER on N points of linspace(1, 100), scaled to [0, 1]; step i
    takes MIN + (T - MIN) (1 - c_i / N) y_i with c_i counted *after* the step. Catches the fraction taken
    before the step, one curve point per step instead of per token, a wrong power or minimum."""
    counts = [2, 2, 4]
    assert temperature_schedule(2.0, counts, "constant") == [2.0, 2.0, 2.0]
    assert temperature_schedule(2.0, counts) == [2.0, 2.0, 2.0]  # constant is the default
    assert temperature_schedule(2.0, counts, "linear") == pytest.approx([2.0, 1.5, 1.0])
    # N = 8: x = 1, 15.14, 29.29 (step 99/7); y = 1/x - 0.01, / 0.99 -> 1, 0.056604, 0.024390;
    # (1 - c/N) = 0.75, 0.5, 0: 1 + 2 x (0.75, 0.028302, 0)
    assert temperature_schedule(3.0, counts, "onex:1.0:1.0") == pytest.approx([2.5, 1.0566038, 1.0])
    # y_0 = 1, (1 - 1/8) = 0.875: 0.5 + 1.0 x 0.875; the last step always ends at MIN
    assert temperature_schedule(1.5, [1, 3, 4], "onex:0.5:2.0") == pytest.approx([1.375, 0.5021307, 0.5])
    # the schedule of the step-by-step sampler test: 0 + 4 (1 - c/16) y_i, y = x^-0.5 on linspace(1, 100, 16)
    assert temperature_schedule(4.0, [4, 4, 4, 4], "onex:0:0.5") == pytest.approx(
        [3.0, 0.5838625, 0.1837472, 1e-9])
    # the 6.0 -> 0.5 text-to-image recipe (196 tokens, 49 linear ROAR steps): ~1.95 at step 10
    assert temperature_schedule(6.0, token_schedule(196, 49, "linear"), "onex:0.5:0.5")[10] == pytest.approx(
        1.949, abs=1e-3)
    assert temperature_schedule(1.0, [16], "linear") == [1.0]
    assert temperature_schedule(1.0, [], "linear") == []
    assert temperature_schedule(0.0, [1, 1], "linear") == [1e-9, 1e-9]  # linear and onex are clipped at 1e-9


def test_guidance_schedules():
    """constant: the scale every step (ints fine, lists per step); cosine: 1 + (w - 1)(1 - cos(pi c/N))/2
    with c the tokens committed after the step, so the last step has the full scale."""
    from fourm_core.generation import guidance_schedule

    assert guidance_schedule(3, [2, 2], "constant") == [3.0, 3.0]
    assert guidance_schedule([2.0, -1], [1, 1, 1]) == [(2.0, -1.0)] * 3
    # c/N = 1/4, 1/2, 1: ramps (1 - cos(pi/4))/2 = 0.146447, 0.5, 1
    assert guidance_schedule(3.0, [1, 1, 2], "cosine") == pytest.approx([1.292893, 2.0, 3.0])
    assert guidance_schedule([3.0, 0.0], [2, 2], "cosine") == [pytest.approx((2.0, 0.5)), (3.0, 0.0)]
    with pytest.raises(GenerationError, match="unknown guidance schedule 'wavy'; choose one of constant, cosine"):
        guidance_schedule(2.0, [1], "wavy")
    with pytest.raises(GenerationError, match="guidance scale must be a number or a list"):
        guidance_schedule("2", [1])


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
    # a target exactly on a step of the CDF belongs to the next entry (never to a zero-mass one before it)
    steps = torch.tensor([[0.0, 0.5, 1.0]])
    assert _invert(steps, torch.tensor([[0.0]])).tolist() == [1]
    assert _invert(steps, torch.tensor([[0.5]])).tolist() == [2]


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


def test_filter_logits_boundaries():
    """top-k keeps ties with the k-th logit, caps k at the vocabulary and keeps at least one for tiny
    fractions; top-p removes a token once the mass before it *reaches* p; top-p 1 and 0 keep everything
    and a top-p outside [0, 1] is an error."""
    logits = torch.tensor([[2.0, 1.0, 1.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, True, False]]  # a tie
    assert torch.equal(filter_logits(logits, top_k=10), logits)
    assert torch.equal(filter_logits(logits, top_k=4), logits)
    assert torch.isfinite(filter_logits(logits, top_k=0.01)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_k=0.75)).sum() == 3  # int(0.75 * 4) = 3 (+ no tie)
    flat = torch.zeros(1, 4)  # probabilities exactly 1/4 each: masses before are 0, 1/4, 1/2, 3/4
    assert torch.isfinite(filter_logits(flat, top_p=0.5)).sum() == 2
    assert torch.isfinite(filter_logits(flat, top_p=0.51)).sum() == 3
    assert torch.isfinite(filter_logits(flat, top_p=0.25)).sum() == 1
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)
    assert torch.equal(filter_logits(logits, top_p=0.0), logits)
    uneven = torch.log(torch.tensor([[0.05, 0.15, 0.5, 0.3]]))  # not sorted: the kept set maps back
    assert torch.isfinite(filter_logits(uneven, top_p=0.7)).tolist() == [[False, False, True, True]]
    both = filter_logits(torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]])), top_k=3, top_p=0.5)
    assert torch.isfinite(both).tolist() == [[True, True, False, False]]
    batched = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))  # (..., V): the last axis
    for kw in ({"top_k": 2}, {"top_p": 0.6}):
        rows = torch.stack([filter_logits(r, **kw) for r in batched.reshape(6, 1, 6)]).reshape(2, 3, 6)
        assert torch.equal(filter_logits(batched, **kw), rows)
    for bad in (1.5, -0.5):
        with pytest.raises(GenerationError, match=f"^top_p must be in \\[0, 1\\], got {bad}$"):
            filter_logits(logits, top_p=bad)


def test_sample_tokens_returns_the_probability_of_the_drawn_token_at_the_temperature():
    """MaskGIT's confidence: the returned probability is that of the drawn id under softmax(logits / T) of
    the filtered logits, and the draws follow that distribution (5 000 rows, tolerance 0.03 = 5 sigma)."""
    logits = torch.log(torch.tensor([1.0, 3.0, 0.0 + 1e-30])).expand(5_000, 3)  # p = 1/4, 3/4, 0
    for temperature, p in ((1.0, [0.25, 0.75]), (2.0, [1 / (1 + 3 ** 0.5), 3 ** 0.5 / (1 + 3 ** 0.5)]),
                           (0.5, [0.1, 0.9])):
        ids, probs = sample_tokens(logits, temperature, generator=torch.Generator().manual_seed(0))
        assert set(ids.tolist()) == {0, 1}
        expected = torch.tensor(p)[ids]
        torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
        assert abs(float((ids == 1).float().mean()) - p[1]) < 0.03
    ids, probs = sample_tokens(logits[:4], 1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert ids.tolist() == [1] * 4 and probs.tolist() == [1.0] * 4  # filtered first, then renormalised
    ids, probs = sample_tokens(logits[:4], 1e-12)  # effectively 0: greedy, confidence 1
    assert ids.tolist() == [1] * 4 and probs.tolist() == [1.0] * 4
    ids, probs = sample_tokens(torch.zeros(2, 3, 5).double(), 1.0, generator=torch.Generator().manual_seed(0))
    assert ids.shape == probs.shape == (2, 3) and probs.dtype == torch.float32
    assert torch.allclose(probs, torch.full((2, 3), 0.2))


def test_block_size_is_the_divisor_nearest_cdf_block():
    """The two-level search's block: a divisor of the vocabulary in [64, 256] nearest 128 (the larger one
    first on equal distance), else 128."""
    from fourm_core.generation.sampling import CDF_BLOCK, _block_size

    assert CDF_BLOCK == 128
    assert _block_size(8192) == 128
    assert _block_size(1000) == 125  # 125 and 200 divide 1000: 125 is nearer
    assert _block_size(130 * 7) == 130  # 130 (distance 2) beats 91, 182
    assert _block_size(126 * 130) == 130  # 126 and 130 both at distance 2: the larger wins
    assert _block_size(64 * 3) == 96  # 96 is nearer than 64 or 192
    assert _block_size(30011) == 128  # prime: no divisor, padded blocks
    assert _block_size(256 * 11) == 128  # 128 divides 2816 (as does 256): 128 itself
    assert _block_size(257 * 3) == 128  # 257 is outside [64, 256]; no divisor in range


def test_combine_guidance_broadcasts_one_scale_and_rejects_a_list_for_one_condition():
    cond, c2, uncond = torch.randn(2, 7), torch.randn(2, 7), torch.randn(2, 7)
    both = combine_guidance([cond, c2], uncond, 2.0)
    assert torch.allclose(both, uncond + 2 * (cond - uncond) + 2 * (c2 - uncond))
    assert torch.allclose(combine_guidance([cond], uncond, [0.0]), uncond)
    assert torch.allclose(combine_guidance(cond, uncond, 0.0), uncond)
    with pytest.raises(GenerationError, match="^one conditional logit tensor takes one float guidance scale$"):
        combine_guidance(cond, uncond, [2.0])
