"""Generation modes on tiny real models: partial targets (in-painting, sequence completion and templates),
unconditional generation, weighted and negative conditions, guidance schedules, the embedding-sequence
unconditional input."""

from __future__ import annotations

import pytest
import torch

from fourm_core.generation import GenerationError, Sampler, TargetConfig
from fourm_core.generation import sampler as sampler_mod
from fourm_core.generation.partial import merge_spans

S1, S2, S3, EOS = 5, 6, 7, 3  # [S_1], [S_2], [S_3], [EOS]; ids 4..203 are sentinels, text ids start at 204


@pytest.fixture()
def sampler(tiny_model):
    return Sampler(tiny_model, int8_proposals=False)  # every step samples its float32 logits (recorded below)


def _record_logits(monkeypatch) -> list[torch.Tensor]:
    """Record the (guided) logits every sampling call of the sampler sees."""
    seen: list[torch.Tensor] = []
    orig = sampler_mod.sample_tokens

    def spy(logits, *args, **kw):
        seen.append(logits.detach().clone())
        return orig(logits, *args, **kw)

    monkeypatch.setattr(sampler_mod, "sample_tokens", spy)
    return seen


# -- in-/out-painting ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
def test_inpainting_keeps_the_given_tokens_and_fills_the_rest(sampler, pixels, scheme):
    """The given tokens are in the result unchanged, only the masked positions are committed (over the
    schedule of the masked count), and the given tokens condition what is generated."""
    g = torch.Generator().manual_seed(3)
    known = torch.randint(0, 32, (2, 16), generator=g)
    hole = torch.zeros((2, 16), dtype=torch.bool)
    hole[:, 4:12] = True  # 8 positions to generate
    cfg = TargetConfig(modality="depth", scheme=scheme, steps=4, temperature=1.0)
    steps = list(sampler.iterate({"rgb": pixels}, [cfg], seed=0,
                                 given={"depth": {"tensor": known, "input_mask": hole}}))
    out = steps[-1].tokens
    assert torch.equal(out[~hole], known[~hole])
    assert bool(steps[-1].committed.all())
    new = [int((s.committed & ~p.committed)[0].sum()) for p, s in zip(steps, steps[1:])]
    first = int((steps[0].committed & hole)[0].sum())
    assert [first, *new] == ([1, 3, 3, 1] if scheme == "maskgit" else [2, 2, 2, 2])  # 8 tokens: cosine / linear
    other = known.clone()
    other[~hole] = (known[~hole] + 7) % 32
    res = sampler.generate({"rgb": pixels}, [cfg], seed=0, given={"depth": {"tensor": other, "input_mask": hole}})
    assert not torch.equal(res.tokens["depth"][hole], out[hole])  # the visible tokens are read


def test_partial_image_targets_need_equal_counts_and_a_mask(sampler, pixels):
    hole = torch.zeros((2, 16), dtype=torch.bool)
    hole[0, :3] = True
    hole[1, :5] = True
    with pytest.raises(GenerationError, match=r"partial target 'depth': every row must leave the same number"):
        sampler.generate({"rgb": pixels}, ["depth"], given={"depth": {"tensor": torch.zeros(2, 16, dtype=torch.long),
                                                                      "input_mask": hole}})
    with pytest.raises(GenerationError, match=r"given= 'depth': give an 'input_mask'"):
        sampler.generate({"rgb": pixels}, ["depth"], given={"depth": torch.zeros(2, 16, dtype=torch.long)})
    with pytest.raises(GenerationError, match=r"given= names \['depth'\], which are not targets \(caption\)"):
        sampler.generate({"rgb": pixels}, ["caption"], given={"depth": {"tensor": torch.zeros(2, 16, dtype=torch.long),
                                                                        "input_mask": hole}})


# -- sequences: completion and templates ---------------------------------------------------------------------
def test_merge_spans_literal():
    """Template ``240 [S_1] 241 [S_2] [EOS]``, decoder ``250 251 [S_2] 260 [S_3]`` (stop at [S_3]):
    ``240 250 251 241 260 [EOS]``. A span without a sentinel in the template is dropped, a sentinel without a span is empty."""
    template = torch.tensor([[240, S1, 241, S2, EOS, 0, 0, 0, 0, 0], [S1, 242, S2, EOS, 0, 0, 0, 0, 0, 0]])
    hidden = torch.tensor([[False] * 5 + [True] * 5, [False] * 4 + [True] * 6])
    generated = torch.tensor([[250, 251, S2, 260, S3, 0], [270, S3, 271, 272, 0, 0]])
    lengths = torch.tensor([4, 4])
    out, out_hidden = merge_spans(template, hidden, generated, lengths, length=10, eos_id=EOS, pad_id=0,
                                  first_sentinel_id=S1, num_sentinels=200)
    assert out.tolist() == [[240, 250, 251, 241, 260, EOS, 0, 0, 0, 0], [270, 242, EOS, 0, 0, 0, 0, 0, 0, 0]]
    assert out_hidden.tolist() == [[False] * 6 + [True] * 4, [False] * 3 + [True] * 7]
    long, _ = merge_spans(template[:1], hidden[:1], torch.tensor([[1000 + i for i in range(6)]]), torch.tensor([6]),
                          length=6, eos_id=EOS, pad_id=0, first_sentinel_id=S1, num_sentinels=200)
    assert long.tolist() == [[240, 1000, 1001, 1002, 1003, EOS]]  # cut to length - 1 ids, then [EOS]


def _greedy_oracle(sampler, inputs, template, hidden, n):
    """Greedy decoding without the KV cache: the whole prefix re-decoded every step, the caption template as
    its encoder input."""
    mod_dict = sampler.prepare_inputs(inputs)
    mod_dict["caption"] = {"tensor": template, "input_mask": hidden}
    prefix = torch.full((template.shape[0], 1), S1, dtype=torch.long)
    for _ in range(n):
        logits = sampler.backend.sequence_logits_uncached(mod_dict, "caption", prefix)
        prefix = torch.cat([prefix, logits.argmax(-1, keepdim=True)], dim=1)
    return prefix[:, 1:]


def test_sequence_completion_keeps_the_prefix(sampler, pixels):
    """A prefix without a sentinel is continued: the result starts with it, the continuation is what greedy
    decoding gives with ``prefix [S_1]`` as the caption's encoder input (up to the first sentinel the model
    writes: a sentinel opens another span, which a prefix has no place for), then [EOS]."""
    prefix = torch.tensor([[240, 241, 242, EOS] + [0] * 8, [250, 251, EOS] + [0] * 9])
    cfg = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=5, stop_at_eos=False)
    out = sampler.generate({"rgb": pixels}, [cfg], seed=0, given={"caption": prefix}).tokens["caption"]
    template = torch.tensor([[240, 241, 242, S1] + [0] * 8, [250, 251, S1] + [0] * 9])
    hidden = template == 0
    cont = _greedy_oracle(sampler, {"rgb": pixels}, template, hidden, 5)
    for row, given_ids in ((0, [240, 241, 242]), (1, [250, 251])):
        ids = cont[row].tolist()
        span = ids[: next((i for i, t in enumerate(ids) if 4 <= t < 204), len(ids))]
        expected = [*given_ids, *span, EOS]
        assert out[row].tolist() == expected + [0] * (12 - len(expected))
    plain = sampler.generate({"rgb": pixels}, [cfg], seed=0).tokens["caption"]
    assert not torch.equal(plain[:, :5], cont)  # the prefix is read by the encoder


def test_template_spans_fill_their_sentinels(sampler, pixels):
    """``240 [S_1] 241 [S_2]``: decoding stops at [S_3] (the sentinel after the template's last), and each
    span replaces its sentinel; the merged caption is the result and the next target's input."""
    template = torch.tensor([[240, S1, 241, S2, EOS] + [0] * 7] * 2)
    cfg = TargetConfig(modality="caption", temperature=1.0)
    res = sampler.generate({"rgb": pixels}, [cfg], seed=1, given={"caption": template})
    for row in res.tokens["caption"].tolist():
        assert row[0] == 240 and 241 in row and EOS in row
        body = row[: row.index(EOS)]
        assert not any(S1 <= t < S1 + 199 for t in body)  # every sentinel replaced
    assert torch.equal(res.mod_dict["caption"]["tensor"], res.tokens["caption"])


# -- unconditional ---------------------------------------------------------------------------------------------
def test_unconditional_generation_runs_for_every_kind(sampler):
    res = sampler.generate({}, ["depth", "gvec", TargetConfig(modality="caption", max_new_tokens=4)], seed=0,
                           batch_size=3)
    assert res.tokens["depth"].shape == (3, 16) and res.tokens["gvec"].shape == (3, 4)
    assert res.tokens["caption"].shape == (3, 12)
    again = sampler.generate(None, ["depth"], seed=0, batch_size=3).tokens["depth"]
    assert torch.equal(again, res.tokens["depth"])
    assert sampler.generate({}, ["depth"], seed=0).tokens["depth"].shape == (1, 16)


# -- weighted and negative conditions -------------------------------------------------------------------------
def _captions(*rows):
    return torch.tensor([list(r) + [EOS] + [0] * (11 - len(r)) for r in rows])


@pytest.mark.parametrize("target", ["depth", "caption"])
def test_weighted_conditions_of_one_modality_combine_exactly(sampler, pixels, monkeypatch, target):
    """Two captions, weights 2 and -1: the sampled logits are uncond + 2 (cond_A - uncond) - (cond_B - uncond),
    where cond_X sees rgb and caption X and uncond rgb and the empty caption (one visible [S_1])."""
    cap_a, cap_b = _captions([240, 241, 242], [260, 261]), _captions([270], [280, 281, 282])
    cfg = TargetConfig(modality=target, temperature=1.0, steps=1, max_new_tokens=1 if target == "caption" else None)
    seen = _record_logits(monkeypatch)
    sampler.generate({"rgb": pixels}, [cfg], seed=0, conditions=[({"caption": cap_a}, 2.0), ({"caption": cap_b}, -1.0)])
    guided = seen[-1]
    empty = torch.zeros((2, 12), dtype=torch.long)
    empty[:, 0] = S1
    parts = {}
    for key, cap in (("a", cap_a), ("b", cap_b), ("u", {"tensor": empty, "input_mask": empty == 0})):
        sampler.generate({"rgb": pixels, "caption": cap}, [cfg], seed=0)
        parts[key] = seen[-1]
    expected = parts["u"] + 2.0 * (parts["a"] - parts["u"]) - (parts["b"] - parts["u"])
    torch.testing.assert_close(guided, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("target", ["depth", "caption"])
def test_a_negative_condition_lowers_the_probability_of_what_it_names(sampler, pixels, monkeypatch, target):
    """A condition (a caption for the depth map, a depth map for the caption) "names" the token whose logit it
    raises most over the unconditional pass (rgb and the empty condition), per query. As a negative
    condition (weight -2) it makes that token less likely than the unconditional pass does, as a positive
    one (weight 2) more likely; weight 0 is the unconditional pass itself."""
    name = "caption" if target == "depth" else "depth"
    cond = _captions([240, 241, 242, 243], [290, 291]) if name == "caption" else \
        torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(5))
    empty = {"tensor": torch.zeros((2, 12), dtype=torch.long), "input_mask": torch.ones((2, 12), dtype=torch.bool)}
    empty["tensor"][:, 0], empty["input_mask"][:, 0] = S1, False
    if name == "depth":
        empty = {"tensor": torch.zeros((2, 16), dtype=torch.long), "input_mask": torch.ones((2, 16), dtype=torch.bool)}
    cfg = TargetConfig(modality=target, temperature=1.0, steps=1, max_new_tokens=1 if target == "caption" else None)
    seen = _record_logits(monkeypatch)
    sampler.generate({"rgb": pixels, name: empty}, [cfg], seed=0)
    uncond = seen[-1]
    sampler.generate({"rgb": pixels, name: cond}, [cfg], seed=0)
    named = (seen[-1] - uncond).argmax(-1, keepdim=True)
    probs = {}
    for w in (-2.0, 0.0, 2.0):
        sampler.generate({"rgb": pixels}, [cfg], seed=0, conditions=[({name: cond}, w)])
        probs[w] = seen[-1].softmax(-1).gather(-1, named)
    base = uncond.softmax(-1).gather(-1, named)
    torch.testing.assert_close(probs[0.0], base, atol=1e-6, rtol=1e-4)
    assert bool((probs[-2.0] < base * 0.99).all()), probs[-2.0] / base
    assert bool((probs[2.0] > base * 1.01).all()), probs[2.0] / base


def test_weighted_conditions_errors(sampler, pixels):
    cap = _captions([240], [241])
    with pytest.raises(GenerationError, match=r"'caption': both an input and a weighted condition"):
        sampler.generate({"rgb": pixels, "caption": cap}, ["depth"], conditions=[({"caption": cap}, 2.0)])
    with pytest.raises(GenerationError, match="conditions= is empty"):
        sampler.generate({"rgb": pixels}, ["depth"], conditions=[])
    with pytest.raises(GenerationError, match="a list of guidance scales"):
        sampler.generate({"rgb": pixels}, [TargetConfig(modality="depth", guidance=[2.0, 1.0])])


def test_cosine_guidance_schedule_scales_step_by_step(sampler, pixels, monkeypatch):
    """cosine guidance at scale 3 over 4 linear steps of 4 tokens: the scales 1 + 2 (1 - cos(pi c/16))/2 for
    c = 4, 8, 12, 16 (1.293, 2.0, 2.707, 3.0) combine each step's logits."""
    calls = []
    orig = sampler_mod.combine

    def spy(values, k, weights, *a, **kw):
        calls.append(weights)
        return orig(values, k, weights, *a, **kw)

    monkeypatch.setattr(sampler_mod, "combine", spy)
    cfg = TargetConfig(modality="depth", scheme="roar", steps=4, guidance=3, guidance_schedule="cosine")
    sampler.generate({"rgb": pixels}, [cfg], seed=0)
    assert calls == pytest.approx([1.2928932, 2.0, 2.7071068, 3.0])


# -- the unconditional input of an embedding sequence ---------------------------------------------------------
def test_embedding_sequence_unconditional_keeps_one_visible_zero_row():
    from fourm_registry import ModalitySpec

    from fourm_core.kinds import adapter_for

    spec = ModalitySpec(name="emb", kind="embedding_sequence", max_length=4, embed_dim=8)
    t = torch.randn(2, 4, 8)
    out, mask = adapter_for(spec).empty_condition(t, torch.zeros(2, 4, dtype=torch.bool), pad_id=0,
                                                  first_sentinel_id=S1)
    assert torch.equal(out, torch.zeros_like(t))
    assert mask.tolist() == [[False, True, True, True]] * 2
