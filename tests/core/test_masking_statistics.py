"""Seeded statistical tests of fourm_core.masking: where the masked / visible tokens fall, and how budgets split.

Every test draws from a fixed seed, so a run is deterministic; each bound is chosen so that correct code would
fail it for fewer than about one seed in a million (stated per test), while the faults named in the docstrings
miss it by orders of magnitude.

Chi-square with fixed-size sets. When every sample picks exactly ``k`` of ``N`` positions uniformly without
replacement, the indicator vector X of a sample has ``E[X_j] = p = k/N`` and covariance
``p(1-p) N/(N-1) (I - 11'/N)``. Over ``B`` independent samples the per-position counts ``O_j`` are then
approximately normal with that covariance times B, so ``T = sum_j (O_j - Bp)^2 (N-1) / (B p (1-p) N)`` is
approximately chi-square with ``N - 1`` degrees of freedom (the ``11'`` direction has zero variance because every
sample picks exactly k). The critical values below are the chi-square ``1 - 1e-6`` quantiles.
"""

from __future__ import annotations

import math

import pytest
import torch

from fourm_core.masking import Masker, MaskingConfig, TextVocabInfo
from fourm_registry import ModalitySet, ModalitySpec

SER = "fourm_core.masking:Masker"  # any importable attribute: the masker never loads the serializer
EOS, PAD, S0 = 3, 0, 4
#: chi-square 1 - 1e-6 quantiles by degrees of freedom (scipy.stats.chi2.ppf(1 - 1e-6, df))
CHI2_1E6 = {2: 27.63, 4: 33.38, 14: 54.64, 15: 56.49, 63: 131.37}
#: two-sided normal bound for 1e-6 spread over up to 64 simultaneous checks: norm.isf(1e-6 / 128) = 5.65
Z = 5.7


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(name: str = "tok", side: int = 4, vocab: int = 64) -> ModalitySpec:
    return ModalitySpec(name=name, kind="image", grid=(side, side), vocab_size=vocab)


def _pixels(name: str = "rgb", side: int = 4) -> ModalitySpec:
    return ModalitySpec(name=name, kind="pixels", grid=(side, side), patch_size=4, channels=3)


def _caption(max_length: int = 24, name: str = "caption") -> ModalitySpec:
    return ModalitySpec(name=name, kind="sequence", max_length=max_length, vocab_size=1000, serializer=SER)


def _fixed_sets_chi2(counts: torch.Tensor, bsz: int, k: int) -> float:
    """The statistic T of the module docstring for per-position counts of B samples picking k of N each."""
    n = counts.numel()
    p = k / n
    dev = counts.double() - bsz * p
    return float((dev ** 2).sum() * (n - 1) / (bsz * p * (1 - p) * n))


def _image_tokens(bsz: int, n: int, seed: int, vocab: int = 64) -> torch.Tensor:
    return torch.randint(0, vocab, (bsz, n), generator=_gen(seed))


# ------------------------------------------------------------------------------------------------------------
# image and pixel positions
# ------------------------------------------------------------------------------------------------------------

B_POS = 4000
K_IN, K_TG = 5, 6


@pytest.fixture(scope="module")
def image_masks() -> dict[str, torch.Tensor]:
    ms = ModalitySet([_image()])
    cfg = MaskingConfig(input_tokens=K_IN, target_tokens=K_TG)
    out = Masker(ms, cfg)({"tok": _image_tokens(B_POS, 16, 0)}, generator=_gen(11))["tok"]
    return {"input": ~out["input_mask"], "target": ~out["target_mask"]}


def test_image_budgets_are_exact_for_a_single_modality(image_masks):
    """Pins the sizes the statistics below rely on: one image modality gets the whole budget."""
    assert (image_masks["input"].sum(1) == K_IN).all()
    assert (image_masks["target"].sum(1) == K_TG).all()
    assert not (image_masks["input"] & image_masks["target"]).any()


@pytest.mark.parametrize("role,k", [("input", K_IN), ("target", K_TG)])
def test_image_positions_are_uniform_over_the_grid(image_masks, role, k):
    """Catches positions taken in raster order (or any fixed / biased order) instead of a random permutation:
    raster order puts every input on positions 0..4, T ~ 60000 against the bound 56.5 (chi-square, 15 dof,
    p = 1e-6 for correct code)."""
    counts = image_masks[role].sum(0)
    t = _fixed_sets_chi2(counts, B_POS, k)
    assert t < CHI2_1E6[15], (role, t, counts.tolist())
    # and each row is its own draw: not all rows share one set
    assert len({tuple(r.nonzero().flatten().tolist()) for r in image_masks[role][:200]}) > 150


@pytest.mark.parametrize("given", [0, 7, 15])
def test_image_targets_are_uniform_over_the_positions_the_input_left(image_masks, given):
    """The target set, given that position ``given`` is an input, is uniform over the 15 other positions (and
    never the input position): catches targets chosen next to the inputs, or in raster order over the rest.
    Fixed-size sets of K_TG out of 15, chi-square with 14 dof, bound at p = 1e-6."""
    rows = image_masks["input"][:, given]
    tg = image_masks["target"][rows]
    assert not tg[:, given].any()
    others = torch.cat([tg[:, :given], tg[:, given + 1:]], 1).sum(0)
    t = _fixed_sets_chi2(others, int(rows.sum()), K_TG)
    assert t < CHI2_1E6[14], (given, t, others.tolist())


def test_image_positions_do_not_depend_on_the_token_values():
    """The masks are a function of the generator only: catches a position order derived from the data (e.g.
    argsort of the token ids) or a generator that is not the one passed in."""
    ms = ModalitySet([_image()])
    masker = Masker(ms, MaskingConfig(input_tokens=K_IN, target_tokens=K_TG))
    a = masker({"tok": _image_tokens(64, 16, 1)}, generator=_gen(5))["tok"]
    b = masker({"tok": _image_tokens(64, 16, 2)}, generator=_gen(5))["tok"]
    assert torch.equal(a["input_mask"], b["input_mask"]) and torch.equal(a["target_mask"], b["target_mask"])
    c = masker({"tok": _image_tokens(64, 16, 1)}, generator=_gen(6))["tok"]
    assert not torch.equal(a["input_mask"], c["input_mask"])


def test_two_image_modalities_get_independent_positions():
    """Each modality draws its own permutation: catches one order reused for every modality. Two modalities
    with 8 inputs each share the same set with probability 1/C(16, 8) per sample; the overlap of the two sets
    is hypergeometric with mean 4 (bound: the batch mean within 5.7 sigma)."""
    ms = ModalitySet([_image("a"), _image("b")])
    cfg = MaskingConfig.from_dict({"input_tokens": 16, "target_tokens": 0,
                                   "mixture": [{"input_alphas": 1000.0, "target_alphas": 0.0}]})
    bsz = 2000
    out = Masker(ms, cfg)({"a": _image_tokens(bsz, 16, 0), "b": _image_tokens(bsz, 16, 1)}, generator=_gen(3))
    ia, ib = ~out["a"]["input_mask"], ~out["b"]["input_mask"]
    same = (ia.sum(1) == 8) & (ib.sum(1) == 8)
    assert int(same.sum()) > bsz // 4  # alpha 1000: an even split whenever the rounding falls that way
    ia, ib = ia[same], ib[same]
    assert not (ia == ib).all(1).any()
    overlap = (ia & ib).sum(1).double()
    var = 8 * 8 * 8 * 8 / (16 * 16 * 15)  # hypergeometric variance: n K (N-K) (N-n) / (N^2 (N-1))
    assert abs(float(overlap.mean()) - 4.0) < Z * math.sqrt(var / len(overlap))


def test_pixel_patches_are_uniform_over_the_grid():
    """Pixels take the same random patch order as token images: catches raster order on the pixel path.
    An 8x8 patch grid, 13 visible patches per sample, chi-square with 63 dof at p = 1e-6."""
    ms = ModalitySet([_pixels(side=8)])
    bsz, k = 3000, 13
    rgb = torch.randn(bsz, 3, 32, 32, generator=_gen(0))
    out = Masker(ms, MaskingConfig(input_tokens=k, target_tokens=0))({"rgb": rgb}, generator=_gen(21))["rgb"]
    vis = ~out["input_mask"]
    assert vis.shape == (bsz, 64) and (vis.sum(1) == k).all()
    assert out["target_mask"].all()  # pixels are never targets
    assert torch.equal(out["tensor"], rgb)  # the pixels themselves are passed on unchanged
    t = _fixed_sets_chi2(vis.sum(0), bsz, k)
    assert t < CHI2_1E6[63], (t, vis.sum(0).tolist())


def test_pixel_positions_are_uniform_next_to_a_token_modality():
    """Pixel and token-image positions, drawn in the same call with Dirichlet budgets, are each uniform: the
    per-position visible rate equals the mean budget / 16 everywhere (binomial counts, 5.7 sigma per position;
    the sum over positions is exact so only the spread is tested)."""
    ms = ModalitySet([_pixels(), _image()])
    bsz = 4000
    batch = {"rgb": torch.randn(bsz, 3, 16, 16, generator=_gen(0)), "tok": _image_tokens(bsz, 16, 1)}
    out = Masker(ms, MaskingConfig(input_tokens=12, target_tokens=4))(batch, generator=_gen(4))
    for name in ("rgb", "tok"):
        vis = (~out[name]["input_mask"]).double()
        rate = float(vis.sum()) / (bsz * 16)
        assert 0.2 < rate < 0.55, (name, rate)  # both modalities really are used
        per_pos = vis.mean(0)
        # each row's count is fixed given its budget; bound the per-position rate by the Bernoulli spread
        sd = math.sqrt(rate * (1 - rate) / bsz)
        assert float((per_pos - rate).abs().max()) < Z * sd, (name, per_pos.tolist())


# ------------------------------------------------------------------------------------------------------------
# Dirichlet budgets and mixture weights
# ------------------------------------------------------------------------------------------------------------

ALPHAS = {"a": 0.5, "b": 1.0, "c": 2.0, "d": 4.5}


def _dirichlet_moments(alphas: dict[str, float]) -> dict[str, tuple[float, float]]:
    a0 = sum(alphas.values())
    return {k: (a / a0, a * (a0 - a) / (a0 * a0 * (a0 + 1))) for k, a in alphas.items()}


@pytest.fixture(scope="module")
def dirichlet_budgets() -> dict[str, dict[str, torch.Tensor]]:
    """Four 8x8 image modalities; 32 input and 32 target tokens split by Dirichlet(ALPHAS) each. A modality
    holds 64 tokens, so no cap ever binds and each budget is the Dirichlet share of 32 up to rounding."""
    ms = ModalitySet([_image(n, side=8) for n in ALPHAS])
    cfg = MaskingConfig.from_dict({"input_tokens": 32, "target_tokens": 32, "fill_budget": False,
                                   "mixture": [{"input_alphas": ALPHAS, "target_alphas": dict(reversed_alphas())}]})
    bsz = 4000
    batch = {n: _image_tokens(bsz, 64, i) for i, n in enumerate(ALPHAS)}
    out = Masker(ms, cfg)(batch, generator=_gen(2))
    return {"input": {n: (~out[n]["input_mask"]).sum(1) for n in ALPHAS},
            "target": {n: (~out[n]["target_mask"]).sum(1) for n in ALPHAS}}


def reversed_alphas() -> dict[str, float]:
    """Target alphas: ALPHAS in the reverse order, so that input and target alphas differ per modality."""
    names = list(ALPHAS)
    return dict(zip(names, reversed(list(ALPHAS.values()))))


@pytest.mark.parametrize("role", ["input", "target"])
def test_dirichlet_budget_shares_follow_the_alphas(dirichlet_budgets, role):
    """Mean budget share of modality i is alpha_i / sum(alpha), for inputs and (with their own alphas) targets.
    Catches alphas applied to the wrong modality, target alphas used for inputs, a uniform split.
    Bound: 5.7 standard errors of the mean Dirichlet share (at most +-0.0077 here) plus 1/32 for rounding a
    share to whole tokens."""
    budgets = dirichlet_budgets[role]
    alphas = ALPHAS if role == "input" else reversed_alphas()
    total = sum(budgets.values())
    assert (total == 32).all()  # the budget is always spent exactly
    for name, (mean, var) in _dirichlet_moments(alphas).items():
        share = budgets[name].double() / 32
        tol = Z * math.sqrt(var / len(share)) + 1 / 32
        assert abs(float(share.mean()) - mean) < tol, (role, name, float(share.mean()), mean, tol)


@pytest.mark.parametrize("role", ["input", "target"])
def test_dirichlet_budget_share_variance_matches_the_dirichlet(dirichlet_budgets, role):
    """The spread of the shares is that of Dirichlet(alpha): share_i ~ Beta(a_i, a0 - a_i), var_i =
    a_i (a0 - a_i) / (a0^2 (a0 + 1)). Catches a wrong concentration, which the mean test cannot see (e.g. every
    alpha doubled, or a gamma sampler with the right mean but the wrong shape). Bound: the sample variance of
    n draws has sd var * sqrt((excess_kurtosis + 2) / n) (Beta kurtosis); 5.7 sd plus 1/32^2 for rounding."""
    budgets = dirichlet_budgets[role]
    alphas = ALPHAS if role == "input" else reversed_alphas()
    a0 = sum(alphas.values())
    for name, (_, var) in _dirichlet_moments(alphas).items():
        a, b = alphas[name], a0 - alphas[name]
        kurt = 6 * ((a - b) ** 2 * (a + b + 1) - a * b * (a + b + 2)) / (a * b * (a + b + 2) * (a + b + 3))
        share = budgets[name].double() / 32
        got = float(share.var())
        tol = Z * var * math.sqrt((kurt + 2) / len(share)) + 1 / 32 ** 2
        assert abs(got - var) < tol, (role, name, got, var, tol)


def test_mixture_components_are_drawn_by_weight():
    """Components are picked per sample with probability weight / sum(weights): catches the weights ignored
    (uniform choice) or inverted. 3:1 weights over 4000 samples: 0.75 +- 5.7 * 0.0068."""
    ms = ModalitySet([_image("a"), _image("b")])
    cfg = MaskingConfig.from_dict({"input_tokens": 4, "target_tokens": 0, "mixture": [
        {"name": "a-in", "weight": 3.0, "input_alphas": {"a": 1.0}, "target_alphas": 0.0},
        {"name": "b-in", "weight": 1.0, "input_alphas": {"b": 1.0}, "target_alphas": 0.0}]})
    bsz = 4000
    out = Masker(ms, cfg)({"a": _image_tokens(bsz, 16, 0), "b": _image_tokens(bsz, 16, 1)}, generator=_gen(8))
    na, nb = (~out["a"]["input_mask"]).sum(1), (~out["b"]["input_mask"]).sum(1)
    assert (((na == 4) & (nb == 0)) | ((na == 0) & (nb == 4))).all()  # one component per sample, exactly
    frac = float((na == 4).double().mean())
    assert abs(frac - 0.75) < Z * math.sqrt(0.75 * 0.25 / bsz), frac


def test_budget_totals_are_uniform_over_the_configured_range():
    """``input_tokens: [3, 7]`` / ``target_tokens: [2, 4]``: each sample's total is drawn uniformly from the
    inclusive range. Catches an exclusive upper end, a range starting at 0, or one past the maximum. Counts of
    the 5 (3) values over 3000 samples, chi-square 4 (2) dof at p = 1e-6."""
    ms = ModalitySet([_image()])
    bsz = 3000
    out = Masker(ms, MaskingConfig(input_tokens=(3, 7), target_tokens=(2, 4)))(
        {"tok": _image_tokens(bsz, 16, 0)}, generator=_gen(22))["tok"]
    for counts, lo, hi in (((~out["input_mask"]).sum(1), 3, 7), ((~out["target_mask"]).sum(1), 2, 4)):
        assert int(counts.min()) == lo and int(counts.max()) == hi, (lo, hi, counts.unique())
        freq = torch.bincount(counts - lo, minlength=hi - lo + 1).double()
        e = bsz / (hi - lo + 1)
        t = float(((freq - e) ** 2 / e).sum())
        assert t < CHI2_1E6[hi - lo], (lo, hi, freq.tolist())


@pytest.mark.parametrize("total", [1, 3])
def test_budget_left_by_rounding_goes_by_share(total):
    """Tokens left after flooring the shares go one each to modalities drawn without replacement with
    probability proportional to their share (a Gumbel top-k). Alphas 6e4 : 3e4 : 1e4 pin the shares to
    0.6 / 0.3 / 0.1 (sd 0.0015). Total 1: nothing survives the floor, modality i gets the token with
    probability p_i. Total 3: the floors give (1, 0, 0) and 2 tokens are left: modality i gets one with
    probability p_i + sum_j p_j p_i / (1 - p_j). Catches a fixed order (first modality first), a uniform draw,
    a negated Gumbel. 6000 samples, chi-square 2 dof at p = 1e-6 (for total 3 the statistic of the dependent
    indicators is compared with twice that bound)."""
    names = ("a", "b", "c")
    p = (0.6, 0.3, 0.1)
    ms = ModalitySet([_image(n) for n in names])
    cfg = MaskingConfig.from_dict({"input_tokens": total, "target_tokens": 0,
                                   "mixture": [{"input_alphas": {n: 1e5 * q for n, q in zip(names, p)}}]})
    bsz = 6000
    out = Masker(ms, cfg)({n: _image_tokens(bsz, 16, i) for i, n in enumerate(names)}, generator=_gen(23))
    got = torch.stack([(~out[n]["input_mask"]).sum(1) for n in names], 1)
    assert (got.sum(1) == total).all()
    floors = torch.tensor([0, 0, 0] if total == 1 else [1, 0, 0])
    left = got - floors
    assert int(left.min()) == 0 and int(left.max()) == 1, left.unique()
    if total == 1:
        expect = p
    else:
        expect = tuple(pi + sum(pj * pi / (1 - pj) for j, pj in enumerate(p) if j != i) for i, pi in enumerate(p))
    e = torch.tensor(expect, dtype=torch.float64) * bsz
    t = float(((left.sum(0).double() - e) ** 2 / e).sum())
    assert t < CHI2_1E6[2] * (1 if total == 1 else 2), (left.sum(0).tolist(), e.tolist())


def test_tiny_alphas_still_place_the_whole_budget():
    """alpha 0.01 (the reference's sparse mixtures): one modality takes nearly everything, the rest spills to
    the others (commit 4e30df4), never lost to float32 underflow; the largest share is usually the cap."""
    ms = ModalitySet([_image(n) for n in "abc"])
    cfg = MaskingConfig.from_dict({"input_tokens": 40, "target_tokens": 0, "mixture": [{"input_alphas": 0.01}]})
    bsz = 500
    out = Masker(ms, cfg)({n: _image_tokens(bsz, 16, i) for i, n in enumerate("abc")}, generator=_gen(9))
    counts = torch.stack([(~out[n]["input_mask"]).sum(1) for n in "abc"], 1)
    assert (counts.sum(1) == 40).all()
    assert float((counts.max(1).values == 16).double().mean()) > 0.9


# ------------------------------------------------------------------------------------------------------------
# the gamma sampler behind the Dirichlet draws
# ------------------------------------------------------------------------------------------------------------
# It exists because torch.distributions.Dirichlet takes no torch.Generator (its sample() draws from the global
# RNG, so a seeded masker could not be reproducible per generator), rejects alpha 0, and for the sparse mixtures'
# tiny alphas its linear-space Gamma samples underflow (at alpha 0.001 some rows come out exactly uniform):
# it returns log Gamma samples, using Gamma(a) = Gamma(a + 1) * U^(1/a) in log space for a < 1.  (Private:
# imported here because its moments are the contract the Dirichlet budgets rest on.)


@pytest.mark.parametrize("alpha", [0.3, 1.0, 2.5, 40.0])
def test_gamma_sampler_mean_and_variance(alpha):
    """Gamma(alpha, 1) has mean alpha and variance alpha. n = 100000 draws; the sample mean's sd is
    sqrt(alpha / n) and the sample variance's is alpha * sqrt((2 + 6/alpha) / n); bounds at 5.7 sd."""
    from fourm_core.masking import _log_gamma

    n = 100_000
    g = torch.exp(_log_gamma(torch.full((n,), alpha, dtype=torch.float64), _gen(int(alpha * 10))))
    assert g.dtype == torch.float64 and bool((g > 0).all())
    assert abs(float(g.mean()) - alpha) < Z * math.sqrt(alpha / n)
    assert abs(float(g.var()) - alpha) < Z * alpha * math.sqrt((2 + 6 / alpha) / n)


@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_gamma_sampler_is_exact_in_log_space_for_tiny_alpha(alpha):
    """For tiny alpha the samples live in log space: E[log G] = digamma(alpha) (-100.56 at 0.01) and
    Var[log G] = trigamma(alpha). Catches the alpha < 1 boost dropped or applied with the wrong exponent.
    Bounds: 5.7 sd of the sample mean of log G; 10 % on the variance (log G is close to -Exp/alpha, kurtosis
    9: the sample variance's sd is ~1 %)."""
    from fourm_core.masking import _log_gamma

    n = 100_000
    lg = _log_gamma(torch.full((n,), alpha, dtype=torch.float64), _gen(17))
    a = torch.tensor(alpha, dtype=torch.float64)
    mean, var = float(torch.special.digamma(a)), float(torch.special.polygamma(1, a))
    assert bool(torch.isfinite(lg).all())
    assert abs(float(lg.mean()) - mean) < Z * math.sqrt(var / n), (float(lg.mean()), mean)
    assert abs(float(lg.var()) - var) < 0.1 * var, (float(lg.var()), var)


def test_gamma_sampler_uses_the_given_generator_only():
    """Same generator seed, same draws; the global RNG is untouched (the reason the sampler exists)."""
    from fourm_core.masking import _log_gamma

    alpha = torch.tensor([0.01, 0.5, 1.0, 7.0], dtype=torch.float64)
    torch.manual_seed(0)
    a = _log_gamma(alpha, _gen(3))
    state = torch.get_rng_state()
    b = _log_gamma(alpha, _gen(3))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())


# ------------------------------------------------------------------------------------------------------------
# sequences: keep schemes
# ------------------------------------------------------------------------------------------------------------


def _distinct_sequences(bsz: int, max_length: int, seed: int, min_len: int = 1) -> torch.Tensor:
    """Sequences of distinct ids 204.. (so input tokens align with the original unambiguously), then [EOS]."""
    g = _gen(seed)
    out = torch.zeros(bsz, max_length, dtype=torch.long)
    for b in range(bsz):
        n = int(torch.randint(min_len, max_length, (1,), generator=g))
        out[b, :n] = 204 + torch.randperm(700, generator=g)[:n]
        out[b, n] = EOS
    return out


def test_random_keep_masks_every_position_with_probability_one_half():
    """keep 'random' draws a keep probability u ~ U(0, 1) per sample and keeps each token with probability u:
    every position is kept in half of the samples (exactly binomial(B, 1/2) per position, 5.7 sigma), with a
    budget that never binds. Catches spans always at the start or end, and a keep probability not drawn."""
    ms = ModalitySet([_caption(16)])
    bsz = 4000
    seq = torch.full((bsz, 16), 300, dtype=torch.long)
    seq[:, :15] = torch.arange(300, 315)
    seq[:, 15] = EOS
    cfg = MaskingConfig.from_dict({"input_tokens": 100, "target_tokens": None})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(12))["caption"]
    kept = torch.zeros(bsz, 16, dtype=torch.bool)
    for b in range(bsz):
        inp = v["tensor"][b][~v["input_mask"][b]]
        ids = inp[inp >= 204]
        kept[b, ids - 300] = True
        kept[b, 15] = bool((inp == EOS).any())
    rate = kept.double().mean(0)
    assert float((rate - 0.5).abs().max()) < Z * math.sqrt(0.25 / bsz), rate.tolist()
    # the number kept per sample is not binomial(16, 1/2) but spread by u: its variance is far larger
    per_sample = kept.sum(1).double()
    assert float(per_sample.var()) > 3 * 16 * 0.25


def test_binary_keep_shows_all_or_nothing():
    """keep 'binary': a sample keeps the whole sequence or masks it as one span, about half each (5.7 sigma).
    With everything kept, the target is the single closing sentinel [S_1]."""
    ms = ModalitySet([_caption(12)])
    bsz = 2000
    seq = _distinct_sequences(bsz, 12, 0)
    cfg = MaskingConfig.from_dict({"input_tokens": 100, "target_tokens": None,
                                   "modalities": {"caption": {"keep": "binary"}}})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(13))["caption"]
    full = 0
    for b in range(bsz):
        orig = seq[b][seq[b] != PAD].tolist()
        inp = v["tensor"][b][~v["input_mask"][b]].tolist()
        tgt = v["tensor"][b][~v["target_mask"][b]].tolist()
        if inp == orig:
            full += 1
            assert tgt == [S0 + 1]
        else:
            assert inp == [S0 + 1] and tgt == [S0 + 1, *orig, S0 + 2], (inp, tgt)
    assert abs(full / bsz - 0.5) < Z * math.sqrt(0.25 / bsz), full


def test_all_keep_with_room_shows_the_whole_sequence():
    """keep 'all' and a budget that fits: the input is the sequence itself, and the target only [S_1]."""
    ms = ModalitySet([_caption(12)])
    seq = _distinct_sequences(50, 12, 1)
    cfg = MaskingConfig.from_dict({"input_tokens": 100, "target_tokens": None,
                                   "modalities": {"caption": {"keep": "all"}}})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(1))["caption"]
    for b in range(50):
        orig = seq[b][seq[b] != PAD].tolist()
        assert v["tensor"][b][: len(orig)].tolist() == orig
        assert (~v["input_mask"][b]).nonzero().flatten().tolist() == list(range(len(orig)))
        assert v["tensor"][b][~v["target_mask"][b]].tolist() == [S0 + 1]


def test_over_budget_sequence_lowers_its_keep_probability_until_it_fits():
    """keep 'all' and a budget smaller than the sequence: the keep threshold decays (x0.9 per step) until the
    input (kept tokens + one sentinel per span) fits. The input must fit and still use most of the budget:
    catches a decay that jumps straight to 'mask everything' (input = one sentinel) or never ends."""
    ms = ModalitySet([_caption(24)])
    bsz = 400
    seq = torch.zeros(bsz, 24, dtype=torch.long)
    seq[:, :22] = torch.arange(300, 322)
    seq[:, 22] = EOS
    cfg = MaskingConfig.from_dict({"input_tokens": 10, "target_tokens": None,
                                   "modalities": {"caption": {"keep": "all"}}})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(14))["caption"]
    n_in = (~v["input_mask"]).sum(1)
    assert (n_in <= 10).all() and (n_in >= 1).all()
    assert float(n_in.double().mean()) > 6.0, n_in.double().mean()
    # the thresholds reached are not all alike: the input sizes vary from sample to sample
    assert len(set(n_in.tolist())) >= 3


# ------------------------------------------------------------------------------------------------------------
# sequences: span invariants
# ------------------------------------------------------------------------------------------------------------


def _full_target(orig: list[int], inp: list[int]) -> list[int]:
    """The untruncated target implied by the input: per sentinel, the run of original tokens it replaces, then
    a closing sentinel. Needs distinct original ids. Asserts that the input is the original with maximal
    masked runs replaced by sentinels [S_1], [S_2], ... in order."""
    out: list[int] = []
    i = 0  # position in orig
    k = 0  # sentinels seen
    for j, t in enumerate(inp):
        if S0 <= t < S0 + 200:
            k += 1
            assert t == S0 + k, ("sentinels numbered in order from [S_1]", inp)
            nxt = inp[j + 1] if j + 1 < len(inp) else None
            assert nxt is None or not (S0 <= nxt < S0 + 200), ("two spans never touch", inp)
            end = orig.index(nxt, i) if nxt is not None else len(orig)
            assert end > i, ("a span masks at least one token", inp)
            out += [t, *orig[i:end]]
            i = end
        else:
            assert orig[i] == t, ("kept tokens keep their order", inp, orig)
            i += 1
    assert i == len(orig), ("spans and kept tokens cover the whole sequence", inp, orig)
    return out + [S0 + k + 1]


@pytest.mark.parametrize("keep", ["random", "binary", "all"])
def test_spans_partition_the_sequence_and_sentinels_count_from_one(keep):
    """Input = the sequence with maximal masked runs replaced by [S_1], [S_2], ... in order; untruncated target
    = each sentinel followed by the run it replaced, then the closing sentinel [S_{k+1}]; the target is written
    right after the modality's input slots. Catches sentinel numbering from [S_0] or out of order, a missing
    closing sentinel, spans that drop or repeat tokens."""
    ms = ModalitySet([_caption(20)])
    bsz = 300
    seq = _distinct_sequences(bsz, 20, 2)
    cfg = MaskingConfig.from_dict({"input_tokens": [0, 30], "target_tokens": None,
                                   "modalities": {"caption": {"keep": keep}}})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(15))["caption"]
    assert v["tensor"].shape == (bsz, 42)
    n_spans = []
    for b in range(bsz):
        orig = seq[b][seq[b] != PAD].tolist()
        ipos = (~v["input_mask"][b]).nonzero().flatten()
        inp = v["tensor"][b][ipos].tolist()
        tgt = v["tensor"][b][~v["target_mask"][b]].tolist()
        assert ipos.tolist() == list(range(len(inp)))  # input packed at the start
        if not inp:  # no input budget: the whole sequence is one span
            assert tgt == [S0 + 1, *orig, S0 + 2]
            continue
        assert tgt == _full_target(orig, inp), (b, inp, tgt)
        n_spans.append(sum(S0 <= t < S0 + 200 for t in inp))
        tpos = (~v["target_mask"][b]).nonzero().flatten()
        assert tpos.tolist() == list(range(int(tpos[0]), int(tpos[0]) + len(tgt)))  # contiguous
        assert int(tpos[0]) >= len(inp)
        assert torch.equal(v["decoder_attention_mask"][b], (~v["target_mask"][b]).int())
    if keep == "random":
        assert max(n_spans) >= 4  # several spans do occur


def test_truncated_target_is_a_window_of_the_full_target_starting_at_a_sentinel():
    """With a target budget shorter than the full target, the target is a contiguous window of it that starts
    at a sentinel: exactly the budget long, or a suffix (ending with the closing sentinel) when no window of
    the budget's length starts at the chosen sentinel. Both kinds occur."""
    ms = ModalitySet([_caption(24)])
    bsz, budget = 400, 5
    seq = _distinct_sequences(bsz, 24, 3, min_len=8)
    cfg = MaskingConfig.from_dict({"input_tokens": 12, "target_tokens": budget})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(16))["caption"]
    kinds = set()
    for b in range(bsz):
        orig = seq[b][seq[b] != PAD].tolist()
        inp = v["tensor"][b][~v["input_mask"][b]].tolist()
        tgt = v["tensor"][b][~v["target_mask"][b]].tolist()
        full = _full_target(orig, inp)
        if len(full) <= budget:
            assert tgt == full
            kinds.add("whole")
            continue
        assert tgt and S0 < tgt[0] < S0 + 200, tgt
        starts = [i for i in range(len(full)) if full[i:i + len(tgt)] == tgt]
        assert starts, (tgt, full)
        a = starts[0]
        assert len(tgt) == budget or a + len(tgt) == len(full), (tgt, full)
        kinds.add("window" if len(tgt) == budget else "suffix")
    assert {"window", "suffix"} <= kinds, kinds


def test_truncation_start_sentinel_is_spread_over_the_spans():
    """The window starts at a random sentinel (not always the first): catches truncation that always keeps
    the beginning of the target."""
    ms = ModalitySet([_caption(24)])
    bsz = 400
    seq = torch.zeros(bsz, 24, dtype=torch.long)
    seq[:, :22] = torch.arange(300, 322)
    seq[:, 22] = EOS
    cfg = MaskingConfig.from_dict({"input_tokens": 12, "target_tokens": 3})
    v = Masker(ms, cfg)({"caption": seq}, generator=_gen(18))["caption"]
    first = [int(v["tensor"][b][~v["target_mask"][b]][0]) for b in range(bsz) if (~v["target_mask"][b]).any()]
    assert len(set(first)) >= 3 and sum(f == S0 + 1 for f in first) < 0.8 * len(first)


def test_chunked_spans_mask_whole_chunks():
    """Chunked span masking draws one keep decision per chunk (chunks start at the chunk tokens or [EOS]):
    every chunk is wholly kept or wholly inside one span."""
    ms = ModalitySet([_caption(30, name="det")])
    cfg = MaskingConfig.from_dict({"input_tokens": [4, 30], "target_tokens": None,
                                   "modalities": {"det": {"span": "chunked", "chunk_start_tokens": ["box"]}}})
    masker = Masker(ms, cfg, text=TextVocabInfo(token_to_id={"box": 500}))
    bsz = 200
    seq = torch.zeros(bsz, 30, dtype=torch.long)
    chunks = []
    for b in range(bsz):
        k = 1 + b % 7
        toks = torch.tensor([[500, 300 + 2 * i, 301 + 2 * i] for i in range(k)]).flatten()
        seq[b, : len(toks)] = toks
        seq[b, len(toks)] = EOS
        chunks.append(k)
    v = masker({"det": seq}, generator=_gen(19))["det"]
    split = 0
    for b in range(bsz):
        inp = v["tensor"][b][~v["input_mask"][b]].tolist()
        kept = [t for t in inp if t >= 300 and t != 500]
        # a box's two payload tokens are kept together or masked together
        for i in range(chunks[b]):
            split += ((300 + 2 * i) in kept) != ((301 + 2 * i) in kept)
        # no sentinel inside a box: the token after a sentinel starts a box (or is [EOS]); before it a box ended
        for j, t in enumerate(inp):
            if S0 <= t < S0 + 200:
                assert j + 1 == len(inp) or inp[j + 1] in (500, EOS), inp
                assert j == 0 or inp[j - 1] >= 300 and inp[j - 1] % 2 == 1, inp
    assert split == 0


def test_embedding_sequence_keeps_rows_in_order_with_one_zero_row_per_span():
    """Embedding sequences: visible rows are the original rows in order, each masked run replaced by one zero
    row (its 'sentinel'), never two zero rows in a row; never a target."""
    spec = ModalitySpec(name="t5", kind="embedding_sequence", max_length=10, embed_dim=3)
    ms = ModalitySet([spec])
    bsz = 300
    emb = torch.randn(bsz, 10, 3, generator=_gen(0)) + 5.0  # no zero entries
    lengths = torch.randint(1, 11, (bsz,), generator=_gen(1))
    emb[torch.arange(10)[None] >= lengths[:, None]] = 0
    v = Masker(ms, MaskingConfig(input_tokens=(0, 12), target_tokens=4))({"t5": emb}, generator=_gen(20))["t5"]
    assert v["target_mask"].all() and not v["decoder_attention_mask"].any()
    spans_seen = 0
    for b in range(bsz):
        ipos = (~v["input_mask"][b]).nonzero().flatten()
        assert ipos.tolist() == list(range(len(ipos)))
        rows = v["tensor"][b][ipos]
        assert (v["tensor"][b][len(ipos):] == 0).all()
        orig = emb[b, : int(lengths[b])]
        i = 0
        prev_zero = False
        for r in rows:
            if (r == 0).all():
                assert not prev_zero
                prev_zero = True
                spans_seen += 1
                i += 1  # a span masks at least one row; skip to the next kept row below
                continue
            while not torch.equal(orig[i], r):
                assert prev_zero, "rows skipped without a zero row"
                i += 1
            prev_zero = False
            i += 1
        assert i <= len(orig)
    assert spans_seen > 0
