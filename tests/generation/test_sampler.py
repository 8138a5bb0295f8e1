"""MaskGIT / ROAR / autoregressive sampling, guidance, chaining, the step iterator and errors."""

from __future__ import annotations

import pytest
import torch

from fourm_core.generation import GenerationError, Sampler, TargetConfig


@pytest.fixture()
def sampler(tiny_model):
    return Sampler(tiny_model)


def test_kv_cache_matches_full_recompute_greedy(sampler, pixels):
    """Greedy decoding with the self-attention KV cache == re-running the whole prefix every step."""
    cfg = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=8, stop_at_eos=False)
    cached = sampler.generate({"rgb": pixels}, [cfg], seed=0).tokens["caption"][:, :8]
    # Reference: no cache, causal mask over the full prefix, argmax of the last position.
    inputs = sampler.prepare_inputs({"rgb": pixels})
    B = pixels.shape[0]
    empty = torch.zeros((B, 12), dtype=torch.long)
    empty[:, 0] = sampler.first_sentinel_id
    mask = torch.ones((B, 12), dtype=torch.bool)
    mask[:, 0] = False
    inputs["caption"] = {"tensor": empty, "input_mask": mask}
    prefix = torch.full((B, 1), sampler.first_sentinel_id, dtype=torch.long)
    for _ in range(8):
        logits = sampler.backend.sequence_logits_uncached(inputs, "caption", prefix)
        prefix = torch.cat([prefix, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, prefix[:, 1:])
    assert len(set(cached.flatten().tolist())) > 1  # not a degenerate constant output


def test_kv_cache_logits_match(sampler, pixels):
    inputs = sampler.prepare_inputs({"rgb": pixels})
    ids = torch.randint(10, 200, (2, 6))
    state = sampler.backend.start_sequence(inputs, "caption")
    for t in range(6):
        step = sampler.backend.next_logits(state, ids[:, t], t)
        full = sampler.backend.sequence_logits_uncached(inputs, "caption", ids[:, : t + 1])
        torch.testing.assert_close(step, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
def test_fixed_seed_is_reproducible(sampler, pixels, scheme):
    cfg = TargetConfig(modality="depth", scheme=scheme, steps=4, temperature=1.0)
    a = sampler.generate({"rgb": pixels}, [cfg], seed=123).tokens["depth"]
    b = sampler.generate({"rgb": pixels}, [cfg], seed=123).tokens["depth"]
    c = sampler.generate({"rgb": pixels}, [cfg], seed=124).tokens["depth"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (2, 16) and a.dtype == torch.long and int(a.max()) < 32


@pytest.mark.parametrize("target,scheme,steps,kind,counts", [
    ("depth", "maskgit", 5, "cosine", [2, 4, 5, 4, 1]),  # N = 16
    ("depth", "maskgit", 4, "cosine", [2, 6, 6, 2]),
    ("depth", "maskgit", 5, "cosine_late", [1, 3, 3, 5, 4]),
    ("depth", "roar", 8, "cosine_late", [1, 1, 1, 2, 3, 2, 3, 3]),
    ("depth", "roar", 8, None, [2] * 8),  # ROAR's default token schedule is linear
    ("depth", "maskgit", 3, "linear", [6, 5, 5]),
    ("depth", "roar", 20, "linear", [1] * 16),  # trailing empty steps dropped
    ("gvec", "maskgit", 4, "cosine", [1, 1, 1, 1]),  # N = 4
    ("gvec", "maskgit", 8, "cosine", [1, 1, 1, 1]),  # cosine [0, 0, 1, 1, 1, 1, 0, 0]: empty steps skipped
    ("gvec", "roar", 2, "cosine", [2, 2]),
])
def test_step_iterator_commits_the_scheduled_number_per_step(sampler, pixels, target, scheme, steps, kind, counts):
    """Each yielded step commits exactly the scheduled number of new tokens in every row (the schedules'
    literal values are pinned in test_schedules_sampling), numbers its steps, marks only the last one done, and
    the last step holds the generated tokens. Catches a token schedule applied off by one step or not at all."""
    cfg = TargetConfig(modality=target, scheme=scheme, steps=steps, token_schedule=kind)
    steps_seen = list(sampler.iterate({"rgb": pixels}, [cfg], seed=0))
    assert [s.step for s in steps_seen] == list(range(len(counts)))
    assert [s.num_steps for s in steps_seen] == [len(counts)] * len(counts)
    assert [s.done for s in steps_seen] == [False] * (len(counts) - 1) + [True]
    assert all(s.modality == target for s in steps_seen)
    done = [s.committed.sum(1).tolist() for s in steps_seen]
    assert done == [[sum(counts[: i + 1])] * 2 for i in range(len(counts))]
    assert torch.equal(steps_seen[-1].tokens, sampler.generate({"rgb": pixels}, [cfg], seed=0).tokens[target])


def test_guidance_scale_one_equals_no_guidance(sampler, pixels):
    """Weighted guidance with one condition of weight 1 runs the doubled (cond + uncond) batch and must
    reproduce unguided decoding; scale 1 with plain guidance is the unguided path itself."""
    plain = TargetConfig(modality="depth", steps=4, temperature=0.0)
    base = sampler.generate({"rgb": pixels}, [plain], seed=0).tokens["depth"]
    one = sampler.generate({"rgb": pixels}, [plain.replace(guidance=1.0)], seed=0).tokens["depth"]
    doubled = sampler.generate({"rgb": pixels}, [plain.replace(condition_weights={"rgb": 1.0})], seed=0).tokens["depth"]
    assert torch.equal(base, one)
    assert torch.equal(base, doubled)
    cap = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=6, stop_at_eos=False)
    c0 = sampler.generate({"rgb": pixels}, [cap], seed=0).tokens["caption"]
    c1 = sampler.generate({"rgb": pixels}, [cap.replace(condition_weights={"rgb": 1.0})], seed=0).tokens["caption"]
    assert torch.equal(c0, c1)


def test_guidance_changes_the_output_and_is_one_batch(sampler, pixels, monkeypatch):
    calls = []
    orig = sampler.backend.parallel_logits

    def spy(mod_dict, name, positions):
        calls.append(next(iter(mod_dict.values()))["tensor"].shape[0])
        return orig(mod_dict, name, positions)

    monkeypatch.setattr(sampler.backend, "parallel_logits", spy)
    cfg = TargetConfig(modality="depth", steps=4, temperature=1.0)
    base = sampler.generate({"rgb": pixels}, [cfg], seed=0).tokens["depth"]
    calls.clear()
    guided = sampler.generate({"rgb": pixels}, [cfg.replace(guidance=4.0)], seed=0).tokens["depth"]
    assert calls == [4] * 4  # batch 2, doubled, one model call per step
    assert not torch.equal(base, guided)
    calls.clear()
    multi = cfg.replace(condition_weights={"rgb": 2.0, "tok_rgb": 0.5})
    sampler.generate({"rgb": pixels, "tok_rgb": torch.randint(0, 32, (2, 16))}, [multi], seed=0)
    assert calls == [6] * 4  # two conditions + unconditional, one batch


def test_chained_generation_feeds_earlier_outputs(sampler, pixels):
    cap = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=6, stop_at_eos=False)
    depth = TargetConfig(modality="depth", steps=3, temperature=0.0)
    chained = sampler.generate({"rgb": pixels}, [depth, cap], seed=0)
    assert chained.mod_dict["depth"]["input_mask"].any() == False  # noqa: E712 - the finished target is an input
    fresh = sampler.generate({"rgb": pixels, "depth": chained.tokens["depth"]}, [cap], seed=0)
    assert torch.equal(chained.tokens["caption"], fresh.tokens["caption"])
    alone = sampler.generate({"rgb": pixels}, [cap], seed=0).tokens["caption"]
    assert not torch.equal(alone, chained.tokens["caption"])
    # and the other way round: a finished caption conditions the depth map
    d_chain = sampler.generate({"rgb": pixels}, [cap, depth], seed=0)
    d_fresh = sampler.generate({"rgb": pixels, "caption": d_chain.tokens["caption"]}, [depth], seed=0)
    assert torch.equal(d_chain.tokens["depth"], d_fresh.tokens["depth"])


def test_batched_rows_are_independent(sampler, pixels):
    cfg = TargetConfig(modality="depth", steps=4, temperature=0.0)
    both = sampler.generate({"rgb": pixels}, [cfg], seed=0).tokens["depth"]
    first = sampler.generate({"rgb": pixels[:1]}, [cfg], seed=0).tokens["depth"]
    assert torch.equal(both[:1], first)


def test_sequence_output_layout_and_eos(sampler, pixels):
    out = sampler.generate({"rgb": pixels}, [TargetConfig(modality="caption", temperature=1.0,
                                                           max_new_tokens=5)], seed=0)
    ids = out.tokens["caption"]
    assert ids.shape == (2, 12)
    for row in ids.tolist():
        eos = row.index(3)
        assert eos <= 5 and all(t == 0 for t in row[eos + 1:]) and 3 not in row[:eos]
    vis = ~out.mod_dict["caption"]["input_mask"]
    assert torch.equal(vis.sum(1), torch.tensor([r.index(3) + 1 for r in ids.tolist()]))


def test_vector_target_and_gvec_roar(sampler, pixels):
    out = sampler.generate({"rgb": pixels}, [TargetConfig(modality="gvec", scheme="roar", steps=2)], seed=0)
    assert out.tokens["gvec"].shape == (2, 4) and int(out.tokens["gvec"].max()) < 16


def test_errors_name_the_problem(sampler, pixels):
    with pytest.raises(GenerationError, match=r"does not know modality 'sky'.*caption.*depth"):
        sampler.generate({"rgb": pixels}, ["sky"])
    with pytest.raises(GenerationError, match="cannot generate 'rgb'"):
        sampler.generate({"rgb": pixels}, ["rgb"])
    with pytest.raises(GenerationError, match=r"input 'rgb': expected normalised pixels of shape \(B, 3, 16, 16\)"):
        sampler.generate({"rgb": torch.randn(1, 3, 8, 8)}, ["depth"])
    with pytest.raises(GenerationError, match=r"input 'depth': expected token ids of shape \(B, 16\)"):
        sampler.generate({"depth": torch.zeros(1, 5, dtype=torch.long)}, ["caption"])
    with pytest.raises(GenerationError, match="token ids must be in"):
        sampler.generate({"depth": torch.full((1, 16), 99)}, ["caption"])
    with pytest.raises(GenerationError, match="only scheme 'autoregressive'"):
        sampler.generate({"rgb": pixels}, [TargetConfig(modality="caption", scheme="maskgit")])
    with pytest.raises(GenerationError, match="use 'maskgit' or 'roar'"):
        sampler.generate({"rgb": pixels}, [TargetConfig(modality="depth", scheme="autoregressive")])
    with pytest.raises(GenerationError, match="condition weight for 'caption'"):
        sampler.generate({"rgb": pixels}, [TargetConfig(modality="depth", condition_weights={"caption": 2.0})])
    with pytest.raises(GenerationError, match="max_new_tokens 40 exceeds"):
        sampler.generate({"rgb": pixels}, [TargetConfig(modality="caption", max_new_tokens=40)])
    with pytest.raises(GenerationError, match="disagree on the batch size"):
        sampler.generate({"rgb": pixels, "depth": torch.zeros(3, 16, dtype=torch.long)}, ["caption"])
    with pytest.raises(GenerationError, match="no targets"):
        sampler.generate({"rgb": pixels}, [])
