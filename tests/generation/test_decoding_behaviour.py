"""What MaskGIT and ROAR decoding do step by step, observed through a real tiny FourM whose logits we set.

The model is a real :class:`fourm_core.model.FourM` (debug preset) with its decoder blocks' residual branches
zeroed, so the decoder output of a mask-token query is ``decoder_norm(pos_emb[p])`` and depends only on the
query position ``p``. Its position table and output table are then set so that the logits at position ``p``
are exactly a table row ``table[p]`` we choose: the confidences MaskGIT ranks, and the distributions the
temperature reshapes, are known in advance, and the whole sampler/backend/model path runs unchanged.
"""

from __future__ import annotations

import pytest
import torch

from fourm_registry import ModalitySet, ModalitySpec

from fourm_core.generation import Sampler, TargetConfig

N, V = 16, 32  # the "depth" target: a 4x4 grid over a 32-token vocabulary
NEG = -1000.0  # a logit whose probability is exactly 0 in float32 at every temperature used here


@pytest.fixture(scope="module")
def table_model():
    from fourm_core.model import build_model

    specs = ModalitySet([
        ModalitySpec(name="tok_rgb", kind="image", grid=(4, 4), vocab_size=V),
        ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=V),
    ])
    torch.manual_seed(0)
    model = build_model(specs, {"preset": "debug", "tie_output_embeddings": False}).eval()
    with torch.no_grad():
        for blk in model.decoder:  # the decoder passes its queries through unchanged
            for lin in (blk.self_attn.proj, blk.cross_attn.proj, blk.mlp.fc2):
                lin.weight.zero_()
                if lin.bias is not None:
                    lin.bias.zero_()
        model.mask_token.zero_()
        model._mod_emb("depth", "decoder").zero_()
        model.decoder_norm.weight.fill_(1.0)
        if model.decoder_norm.bias is not None:
            model.decoder_norm.bias.zero_()
        pos = torch.zeros(N, model.config.dim)  # position p -> e_{2p} - e_{2p+1} (zero mean, same norm)
        pos[torch.arange(N), 2 * torch.arange(N)] = 1.0
        pos[torch.arange(N), 2 * torch.arange(N) + 1] = -1.0
        model.decoder_embeddings["depth"].pos_emb[0].copy_(pos)
    return model


def set_logits(model, table: torch.Tensor) -> Sampler:
    """Make the logits of a ``depth`` query at position ``p`` equal ``table[p]`` (N, V); returns a sampler."""
    dim = model.config.dim
    with torch.no_grad():
        pos = model.decoder_embeddings["depth"].pos_emb[0][:N]
        scale = float(model.decoder_norm(pos[:1])[0, 0])  # decoder output at p: scale * (e_2p - e_2p+1)
        weight = torch.zeros(V, dim)
        weight[:, 0:2 * N:2] = table.t() / scale
        model.decoder_embeddings["depth"].to_logits.weight.copy_(weight)
    sampler = Sampler(model)
    seen = sampler.backend.parallel_logits(sampler.prepare_inputs(condition(2)), "depth",
                                           torch.arange(N).expand(2, N))
    torch.testing.assert_close(seen, table.expand(2, N, V), atol=1e-3, rtol=1e-5)  # the fixture works
    return sampler


def condition(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"tok_rgb": torch.randint(0, V, (batch, N), generator=torch.Generator().manual_seed(seed))}


def run(sampler, batch: int, seed: int, **cfg):
    return list(sampler.iterate(condition(batch), [TargetConfig(modality="depth", **cfg)], seed=seed))


def newly_committed(steps) -> list[torch.Tensor]:
    """Per step, bool (B, N): the positions committed at that step."""
    out, before = [], torch.zeros_like(steps[0].committed)
    for s in steps:
        out.append(s.committed & ~before)
        before = s.committed
    return out


# -- MaskGIT: the most confident of the still-masked positions, step by step --------------------------------
#: position ORDER[i] is uniform over i + 1 tokens: its confidence (the probability of whatever it samples) is
#: exactly 1 / (i + 1), so ORDER is the order of decreasing confidence, and it is not the raster order
ORDER = [9, 2, 14, 5, 0, 11, 7, 15, 3, 12, 1, 8, 13, 6, 10, 4]


def confidence_table() -> tuple[torch.Tensor, list[set[int]]]:
    g = torch.Generator().manual_seed(7)
    table = torch.full((N, V), NEG)
    allowed: list[set[int]] = [set()] * N
    for rank, p in enumerate(ORDER):
        ids = torch.randperm(V, generator=g)[: rank + 1]
        table[p, ids] = 0.0
        allowed[p] = set(ids.tolist())
    return table, allowed


@pytest.mark.parametrize("steps,kind,counts", [
    (4, "cosine", [2, 6, 6, 2]),
    (5, "cosine", [2, 4, 5, 4, 1]),
    (8, "cosine", [1, 2, 3, 3, 3, 3, 1]),  # the 8th step has no token left: skipped
    (4, "cosine_late", [2, 3, 5, 6]),
    (8, "cosine_late", [1, 1, 1, 2, 3, 2, 3, 3]),
    (3, "linear", [6, 5, 5]),
])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_maskgit_commits_the_most_confident_masked_positions_each_step(table_model, steps, kind, counts,
                                                                       temperature):
    """Step ``s`` commits exactly the ``counts[s]`` most confident positions among those still masked (here
    ORDER[sum(counts[:s]) : sum(counts[:s+1])]), and writes there the token sampled at that position.
    Catches committing the least confident tokens, a raster order, a schedule applied off by one step, or
    ids gathered from the wrong positions."""
    table, allowed = confidence_table()
    sampler = set_logits(table_model, table)
    steps_seen = run(sampler, 3, 0, scheme="maskgit", steps=steps, token_schedule=kind, temperature=temperature)
    assert len(steps_seen) == len(counts)
    start = 0
    for s, (step, new) in enumerate(zip(steps_seen, newly_committed(steps_seen))):
        expected = set(ORDER[start:start + counts[s]])
        start += counts[s]
        for row in range(3):
            got = set(torch.nonzero(new[row]).flatten().tolist())
            assert got == expected, f"step {s} row {row}: committed {sorted(got)}, most confident {sorted(expected)}"
            for p in got:
                assert int(step.tokens[row, p]) in allowed[p]
    assert bool(steps_seen[-1].committed.all())


def test_maskgit_most_confident_position_gets_its_only_token(table_model):
    """The certain position (one allowed token) is committed first and holds that token."""
    table, allowed = confidence_table()
    sampler = set_logits(table_model, table)
    first = run(sampler, 2, 5, scheme="maskgit", steps=16, temperature=1.0)[0]
    (only,) = allowed[ORDER[0]]
    assert first.committed.sum(1).tolist() == [1, 1]
    assert first.committed[:, ORDER[0]].all() and (first.tokens[:, ORDER[0]] == only).all()


@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
def test_committed_tokens_never_change_and_every_step_adds_new_ones(tiny_model, pixels, scheme):
    """On the real (input-sensitive) tiny model: once committed, a position keeps its token to the end and
    is never committed again; each step commits exactly the scheduled number of new positions per row, and
    the generation result is the last step's tokens. Catches re-sampling committed positions (e.g. ROAR
    drawing among all positions) and a step result that is not carried into the next step."""
    sampler = Sampler(tiny_model)
    cfg = TargetConfig(modality="depth", scheme=scheme, steps=5, token_schedule="cosine", temperature=1.5)
    it = sampler.iterate({"rgb": pixels}, [cfg], seed=3)
    steps = []
    while True:
        try:
            steps.append(next(it))
        except StopIteration as stop:
            result = stop.value
            break
    prev_tokens, prev_committed = None, torch.zeros((2, 16), dtype=torch.bool)
    for s, step in enumerate(steps):
        assert (step.committed | ~prev_committed).all(), f"step {s} un-committed a position"
        assert ((step.committed & ~prev_committed).sum(1) == [2, 4, 5, 4, 1][s]).all()
        if prev_tokens is not None:
            assert torch.equal(step.tokens[prev_committed], prev_tokens[prev_committed]), f"step {s} changed a token"
        prev_tokens, prev_committed = step.tokens.clone(), step.committed.clone()
    assert torch.equal(result.tokens["depth"], steps[-1].tokens)
    assert not torch.equal(result.tokens["depth"][0], result.tokens["depth"][1])  # rows sampled independently


# -- ROAR: a random order ---------------------------------------------------------------------------------
def uniform_table() -> torch.Tensor:
    return torch.zeros(N, V)


def test_roar_first_step_positions_are_uniform_over_the_grid(table_model):
    """ROAR commits a uniformly random subset of the masked positions: over 128 rows x 2 positions at step 0
    (N=16, 4 cosine_late steps: [2, 3, 5, 6]) each position is hit ~16 times; the chi-square statistic (15 degrees
    of freedom) stays below 37.7 (p = 0.001) and every position is hit. Rows draw their own orders (>= 60 of
    the 120 possible pairs appear; ~79 expected, a fixed order gives 1) and so do seeds. Catches a raster (or any fixed) order."""
    sampler = set_logits(table_model, uniform_table())
    B = 128
    first = newly_committed(run(sampler, B, 0, scheme="roar", steps=4, token_schedule="cosine_late",
                                temperature=1.0))[0]
    assert (first.sum(1) == 2).all()
    hits = first.sum(0).float()
    expected = 2 * B / N
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    assert chi2 < 37.7, f"step-0 positions not uniform: hits {hits.tolist()}"
    assert (hits > 0).all()
    pairs = {tuple(torch.nonzero(r).flatten().tolist()) for r in first}
    assert len(pairs) >= 60
    other = newly_committed(run(sampler, B, 1, scheme="roar", steps=4, token_schedule="cosine_late",
                                temperature=1.0))[0]
    assert (first != other).any(1).float().mean() > 0.8  # a different seed: (nearly) every row differs


def test_roar_order_is_uncorrelated_with_the_raster_index(table_model):
    """The step at which each position is committed does not depend on where it sits in the grid: over
    96 rows the mean commit step of the first 8 raster positions and of the last 8 differ by < 0.3 steps
    (a raster order gives 1.6; the standard error of the difference is ~0.05). Catches raster order at any
    step, not only the first."""
    sampler = set_logits(table_model, uniform_table())
    new = newly_committed(run(sampler, 96, 2, scheme="roar", steps=4, temperature=1.0))
    step_of = sum(s * n.long() for s, n in enumerate(new)).float()  # (B, N): the step that committed each
    assert (sum(n.long() for n in new) == 1).all()  # every position committed exactly once
    gap = float(step_of[:, : N // 2].mean() - step_of[:, N // 2:].mean())
    assert abs(gap) < 0.3, gap


# -- temperatures applied step by step --------------------------------------------------------------------
def two_token_table() -> torch.Tensor:
    """Every position: token 1 (logit 0) or token 2 (logit -1); P(token 2 | T) = 1 / (1 + e^(1/T))."""
    table = torch.full((N, V), NEG)
    table[:, 1], table[:, 2] = 0.0, -1.0
    return table


def test_temperature_schedule_is_applied_step_by_step(table_model):
    """ROAR (no confidence selection), 4 linear steps of 4 tokens, temperature 4 with ``onex:0:0.5``: the step
    temperatures are 3.0, 0.584, 0.184, 1e-9 (the schedule test pins them), so token 2 is drawn with
    probability 0.417, 0.153, 0.0043, 0. Over 96 rows x 4 tokens per step (standard errors 0.025, 0.018,
    0.0034) the observed shares are within 0.1 / 0.06 / 0.03 of that, and the last step is greedy. Catches a
    temperature taken from the wrong step, a constant temperature, or none at all."""
    sampler = set_logits(table_model, two_token_table())
    steps = run(sampler, 96, 0, scheme="roar", steps=4, token_schedule="linear", temperature=4.0,
                temperature_schedule="onex:0:0.5")
    shares = []
    for step, new in zip(steps, newly_committed(steps)):
        picked = step.tokens[new]
        assert set(picked.tolist()) <= {1, 2} and picked.numel() == 96 * 4
        shares.append(float((picked == 2).float().mean()))
    assert abs(shares[0] - 0.417) < 0.1 and abs(shares[1] - 0.153) < 0.06, shares
    assert shares[2] < 0.03 and shares[3] == 0.0, shares


@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
def test_temperature_zero_is_greedy_and_positive_temperature_samples(table_model, scheme):
    """Temperature 0 picks the arg-max (token 1) at every position; temperature 1 samples (token 2 has
    probability 0.27 per draw, so it shows up among 8 x 16 tokens). Catches a temperature that is ignored,
    either way."""
    sampler = set_logits(table_model, two_token_table())
    greedy = run(sampler, 8, 0, scheme=scheme, steps=4, temperature=0.0)[-1].tokens
    assert (greedy == 1).all()
    hot = run(sampler, 8, 0, scheme=scheme, steps=4, temperature=1.0)[-1].tokens
    assert set(hot.unique().tolist()) == {1, 2}


@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
@pytest.mark.parametrize("filtering", [{"top_k": 1}, {"top_p": 0.5}])
def test_top_k_and_top_p_apply_to_parallel_decoding(table_model, scheme, filtering):
    """Hot sampling (temperature 5: token 2 would have probability 0.45) filtered to the most likely token
    (top-k 1, or top-p 0.5: token 1 alone holds 0.55) yields token 1 everywhere. Catches the filters not
    reaching MaskGIT / ROAR."""
    sampler = set_logits(table_model, two_token_table())
    hot = run(sampler, 8, 0, scheme=scheme, steps=4, temperature=5.0)[-1].tokens
    assert (hot == 2).any()
    filtered = run(sampler, 8, 0, scheme=scheme, steps=4, temperature=5.0, **filtering)[-1].tokens
    assert (filtered == 1).all()
