"""Guidance, conditioning, input checking and autoregressive stopping of the sampler, each against an
independent oracle (a different way to compute the same output) on real tiny FourM models."""

from __future__ import annotations

import copy
import logging
import re

import pytest
import torch

from fourm_registry import ModalitySet, ModalitySpec

from fourm_core.generation import GenerationError, Sampler, TargetConfig

_TEXT = "fourm_core.compat.serializer:PlainTextSerializer"


@pytest.fixture()
def sampler(tiny_model):
    return Sampler(tiny_model)


@pytest.fixture(scope="module")
def tok_rgb():
    return torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(4))


def target_cfg(target: str, **kw) -> TargetConfig:
    """Captions: greedy. Depth maps: sampled at temperature 1 (greedy MaskGIT on the tiny model gives a constant
    map); compared runs share the seed, so equal logits give equal tokens."""
    temperature = 0.0 if target == "caption" else 1.0
    return TargetConfig(modality=target, steps=4, temperature=temperature, **kw)


def gen(sampler, inputs, cfg, **kw) -> torch.Tensor:
    return sampler.generate(inputs, [cfg], seed=0, **kw).tokens[cfg.modality]


# -- guidance against oracles -------------------------------------------------------------------------------
def test_guidance_zero_samples_the_unconditional_pass(sampler, pixels, tok_rgb):
    """Scale 0 leaves only the unconditional logits: removing ``tok_rgb`` in that pass must equal decoding
    with ``tok_rgb`` absent (an all-masked image condition is no condition). Catches an unconditional
    pass that keeps the condition, or guidance combined the wrong way round."""
    inputs = {"rgb": pixels, "tok_rgb": tok_rgb}
    uncond = gen(sampler, inputs, target_cfg("depth", guidance=0.0, guidance_conditions=("tok_rgb",)))
    assert torch.equal(uncond, gen(sampler, {"rgb": pixels}, target_cfg("depth")))
    assert not torch.equal(uncond, gen(sampler, inputs, target_cfg("depth")))  # tok_rgb matters


def test_guidance_zero_on_a_caption_removes_it_to_one_sentinel(sampler, pixels):
    """The unconditional version of a text condition is the fully masked sequence: ``[S_1]`` visible at
    position 0, everything else ``[PAD]`` and masked."""
    caption = torch.tensor([[40, 41, 42, 43, 3] + [0] * 7, [50, 51, 3] + [0] * 9])
    cap_cfg = target_cfg("depth", guidance=0.0, guidance_conditions=("caption",))
    uncond = gen(sampler, {"rgb": pixels, "caption": caption}, cap_cfg)
    empty = torch.zeros((2, 12), dtype=torch.long)
    empty[:, 0] = 5
    mask = torch.ones((2, 12), dtype=torch.bool)
    mask[:, 0] = False
    oracle = gen(sampler, {"rgb": pixels, "caption": {"tensor": empty, "input_mask": mask}}, target_cfg("depth"))
    assert torch.equal(uncond, oracle)
    assert not torch.equal(oracle, gen(sampler, {"rgb": pixels, "caption": caption}, target_cfg("depth")))


def test_plain_guidance_on_one_condition_equals_weighted_guidance(sampler, pixels, tok_rgb):
    """``guidance=w`` restricted to ``rgb`` and ``condition_weights={"rgb": w}`` are two code paths for
    ``uncond_rgb + w (cond - uncond_rgb)``; removing both conditions (the default) differs."""
    inputs = {"rgb": pixels, "tok_rgb": tok_rgb}
    for target in ("depth", "caption"):
        extra = {"max_new_tokens": 6, "stop_at_eos": False} if target == "caption" else {}
        plain = gen(sampler, inputs, target_cfg(target, guidance=3.0, guidance_conditions=("rgb",), **extra))
        weighted = gen(sampler, inputs, target_cfg(target, condition_weights={"rgb": 3.0}, **extra))
        assert torch.equal(plain, weighted), target
        both = gen(sampler, inputs, target_cfg(target, guidance=3.0, **extra))
        assert not torch.equal(plain, both), target


def test_multi_condition_weights_select_one_condition(sampler, pixels, tok_rgb):
    """Weights {rgb: 0, tok_rgb: 1} give ``uncond + (cond_tok_rgb - uncond)`` = the pass that sees only
    ``tok_rgb``; {rgb: 1, tok_rgb: 0} the pass that sees only ``rgb``. Catches weights paired with the
    wrong condition or the unconditional pass taken from the wrong chunk."""
    inputs = {"rgb": pixels, "tok_rgb": tok_rgb}
    only_tok = gen(sampler, inputs, target_cfg("depth", condition_weights={"rgb": 0.0, "tok_rgb": 1.0}))
    only_rgb = gen(sampler, inputs, target_cfg("depth", condition_weights={"rgb": 1.0, "tok_rgb": 0.0}))
    assert torch.equal(only_tok, gen(sampler, {"tok_rgb": tok_rgb}, target_cfg("depth")))
    assert torch.equal(only_rgb, gen(sampler, {"rgb": pixels}, target_cfg("depth")))
    assert not torch.equal(only_tok, only_rgb)
    cap = target_cfg("caption", max_new_tokens=6, stop_at_eos=False)
    only_tok_cap = gen(sampler, inputs, cap.replace(condition_weights={"rgb": 0.0, "tok_rgb": 1.0}))
    assert torch.equal(only_tok_cap, gen(sampler, {"tok_rgb": tok_rgb}, cap))


def test_grow_conditioning_adds_finished_targets_to_the_guided_conditions(sampler, pixels):
    """With ``grow_conditioning`` the depth map generated first is removed, like rgb, in the caption's
    unconditional pass (= a fresh run given that depth map as an input); without it only rgb is."""
    depth = target_cfg("depth")
    cap = target_cfg("caption", guidance=3.0, max_new_tokens=6, stop_at_eos=False)
    grown = sampler.generate({"rgb": pixels}, [depth, cap], seed=0, grow_conditioning=True)
    plain = sampler.generate({"rgb": pixels}, [depth, cap], seed=0)
    assert torch.equal(grown.tokens["depth"], plain.tokens["depth"])
    given = {"rgb": pixels, "depth": plain.tokens["depth"]}
    assert torch.equal(grown.tokens["caption"], gen(sampler, given, cap))
    assert torch.equal(plain.tokens["caption"], gen(sampler, given, cap.replace(guidance_conditions=("rgb",))))
    assert not torch.equal(grown.tokens["caption"], plain.tokens["caption"])


def test_a_target_given_as_input_is_regenerated_not_copied(sampler, pixels):
    """A target also present among the inputs is dropped from them and generated from scratch; with
    guidance it is not "removed" in the unconditional pass either (only the real conditions are)."""
    given = torch.zeros((2, 16), dtype=torch.long)
    for cfg in (target_cfg("depth"), target_cfg("depth", guidance=3.0)):
        out = gen(sampler, {"rgb": pixels, "depth": given}, cfg)
        assert torch.equal(out, gen(sampler, {"rgb": pixels}, cfg))


def _batch_sizes(sampler, monkeypatch) -> list[int]:
    """Record the batch size of every parallel (MaskGIT / ROAR) model call; the real method still runs."""
    calls: list[int] = []
    orig = sampler.backend.parallel_logits

    def spy(mod_dict, name, positions):
        calls.append(positions.shape[0])
        return orig(mod_dict, name, positions)

    monkeypatch.setattr(sampler.backend, "parallel_logits", spy)
    return calls


def test_guidance_without_effect_runs_no_unconditional_rows(sampler, pixels, monkeypatch):
    """Scale exactly 1, or no condition left to remove, is plain decoding in a batch of B rows (documented:
    the result is identical and the extra rows are skipped)."""
    calls = _batch_sizes(sampler, monkeypatch)
    base = gen(sampler, {"rgb": pixels}, target_cfg("depth"))
    for cfg in (target_cfg("depth", guidance=1.0), target_cfg("depth", guidance=3.0, guidance_conditions=())):
        calls.clear()
        assert torch.equal(gen(sampler, {"rgb": pixels}, cfg), base)
        assert calls == [2] * 4
    calls.clear()
    gen(sampler, {"rgb": pixels}, target_cfg("depth", guidance=3.0))
    assert calls == [4] * 4


def test_each_step_shows_the_encoder_exactly_the_committed_tokens(sampler, pixels, monkeypatch):
    """MaskGIT / ROAR step s encodes the target with the tokens committed so far visible and the rest
    masked, and queries only the still-masked positions (MaskGIT: all of them; ROAR: the ones it commits)."""
    seen = []
    orig = sampler.backend.parallel_logits

    def spy(mod_dict, name, positions):
        seen.append((mod_dict[name]["tensor"].clone(), mod_dict[name]["input_mask"].clone(), positions.clone()))
        return orig(mod_dict, name, positions)

    monkeypatch.setattr(sampler.backend, "parallel_logits", spy)
    for scheme, counts in (("maskgit", [2, 4, 5, 4, 1]), ("roar", [4, 3, 3, 3, 3])):  # cosine / linear
        seen.clear()
        cfg = TargetConfig(modality="depth", scheme=scheme, steps=5, temperature=1.0)
        steps = list(sampler.iterate({"rgb": pixels}, [cfg], seed=0))
        committed, tokens = torch.zeros((2, 16), dtype=torch.bool), None
        for s, ((t, mask, pos), step) in enumerate(zip(seen, steps)):
            assert torch.equal(mask, ~committed), f"{scheme} step {s}"
            if tokens is not None:
                assert torch.equal(t[committed], tokens[committed])
            width = 16 - sum(counts[:s]) if scheme == "maskgit" else counts[s]
            assert pos.shape == (2, width)
            assert not committed.gather(1, pos).any()  # only still-masked positions are queried
            committed, tokens = step.committed, step.tokens


def test_seed_and_generator_are_the_same_randomness(sampler, pixels):
    """``seed=s`` and ``generator=Generator().manual_seed(s)`` draw the same samples; different seeds
    differ; no seed at all still samples (from a fresh random seed)."""
    cfg = TargetConfig(modality="depth", steps=4, temperature=1.0)
    a = sampler.generate({"rgb": pixels}, [cfg], seed=11).tokens["depth"]
    b = sampler.generate({"rgb": pixels}, [cfg], generator=torch.Generator().manual_seed(11)).tokens["depth"]
    c = sampler.generate({"rgb": pixels}, [cfg], seed=12).tokens["depth"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    unseeded = [sampler.generate({"rgb": pixels}, [cfg]).tokens["depth"] for _ in range(2)]
    assert not torch.equal(unseeded[0], unseeded[1])


# -- inputs ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wide_model():
    """A tiny FourM with the kinds ``tiny_model`` lacks: an encoder-only embedding sequence and a decoder-only
    image target."""
    from fourm_core.model import build_model

    specs = ModalitySet([
        ModalitySpec(name="tok_rgb", kind="image", grid=(4, 4), vocab_size=32),
        ModalitySpec(name="caption", kind="sequence", max_length=12, vocab_size=300, serializer=_TEXT),
        ModalitySpec(name="emb", kind="embedding_sequence", max_length=4, embed_dim=8),
        ModalitySpec(name="sketch", kind="image", grid=(2, 2), vocab_size=16, encoder=False),
        ModalitySpec(name="title", kind="sequence", max_length=6, vocab_size=300, serializer=_TEXT, encoder=False),
    ])
    torch.manual_seed(0)
    return build_model(specs, {"preset": "debug", "tie_output_embeddings": False}).eval()


def test_prepare_inputs_normalises_and_keeps_given_masks(sampler, pixels):
    """Token ids become int64 with nothing masked; pixels float with one mask entry per patch; a text
    sequence is visible up to and including its first [EOS] (without one, only the padding is masked); an
    explicit input_mask is kept, as bool."""
    caption = torch.tensor([[40, 41, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0], [40, 3, 9, 3, 0, 0, 0, 0, 0, 0, 0, 0]],
                           dtype=torch.int32)
    given_mask = torch.zeros((2, 16), dtype=torch.int64)
    given_mask[:, 3] = 1
    out = sampler.prepare_inputs({"rgb": pixels.double(), "caption": caption,
                                  "depth": {"tensor": torch.ones((2, 16), dtype=torch.int32),
                                            "input_mask": given_mask}})
    assert out["rgb"]["tensor"].dtype == torch.float32 and out["rgb"]["input_mask"].shape == (2, 16)
    assert not out["rgb"]["input_mask"].any()
    assert out["caption"]["tensor"].dtype == torch.long
    assert out["caption"]["input_mask"].tolist() == [[False] * 3 + [True] * 9, [False] * 2 + [True] * 10]
    assert out["depth"]["tensor"].dtype == torch.long
    assert out["depth"]["input_mask"].dtype == torch.bool and out["depth"]["input_mask"].sum() == 2
    assert out["depth"]["input_mask"][:, 3].all()
    vec = sampler.prepare_inputs({"gvec": torch.tensor([[1, 2, 3, 15]] * 2, dtype=torch.int16)})["gvec"]
    assert vec["tensor"].dtype == torch.long and not vec["input_mask"].any()
    no_eos = sampler.prepare_inputs({"caption": torch.tensor([[7, 8, 0, 0] + [0] * 8])})
    assert no_eos["caption"]["input_mask"].tolist() == [[False, False] + [True] * 10]  # padding only masked


def test_embedding_sequence_inputs_mask_all_zero_vectors(wide_model):
    sampler = Sampler(wide_model)
    emb = torch.randn(2, 4, 8)
    emb[0, 2:] = 0.0
    out = sampler.prepare_inputs({"emb": emb.double()})
    assert out["emb"]["tensor"].dtype == torch.float32
    assert out["emb"]["input_mask"].tolist() == [[False, False, True, True], [False] * 4]
    with pytest.raises(GenerationError, match=re.escape("input 'emb': expected embeddings of shape (B, L, 8), got (2, 4, 5)")):
        sampler.prepare_inputs({"emb": torch.randn(2, 4, 5)})
    cap = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=4, stop_at_eos=False)
    assert sampler.generate({"emb": emb}, [cap], seed=0).tokens["caption"].shape == (2, 12)


def test_a_decoder_only_target_is_decoded_in_one_step(wide_model, caplog):
    """Without an encoder embedding committed tokens cannot condition later steps: all tokens in one step,
    with a warning, and the target does not join the conditions of the next target."""
    sampler = Sampler(wide_model)
    inputs = {"tok_rgb": torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))}
    with caplog.at_level(logging.WARNING, logger="fourm_core.generation.sampler"):
        it = sampler.iterate(inputs, [TargetConfig(modality="sketch", steps=4)], seed=0)
        steps = list(it)
    assert len(steps) == 1 and steps[0].done and bool(steps[0].committed.all())
    assert "no encoder embedding" in caplog.text and "decoding all 4 tokens in one step" in caplog.text
    assert len(list(sampler.iterate(inputs, [TargetConfig(modality="sketch", steps=2)], seed=0))) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fourm_core.generation.sampler"):
        one = list(sampler.iterate(inputs, [TargetConfig(modality="sketch", steps=1)], seed=0))
    assert len(one) == 1 and caplog.text == ""  # one step asked for: nothing to warn about
    res = sampler.generate(inputs, [TargetConfig(modality="sketch", steps=4),
                                    TargetConfig(modality="title", temperature=0.0, max_new_tokens=3),
                                    TargetConfig(modality="caption", temperature=0.0, max_new_tokens=3)], seed=0)
    assert set(res.mod_dict) == {"tok_rgb", "caption"}  # decoder-only targets never become inputs
    assert res.tokens["sketch"].shape == (2, 4) and res.tokens["title"].shape == (2, 6)
    assert (res.tokens["title"] == 3).sum(1).tolist() == [1, 1]  # laid out with its [EOS]
    with pytest.raises(GenerationError, match="^modality 'sketch' cannot be an input: the model has no encoder embedding for it$"):
        sampler.generate({"sketch": torch.zeros((1, 4), dtype=torch.long)}, ["caption"])


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_input_and_target_errors_say_exactly_what_is_wrong(sampler, pixels):
    cases = [
        ({"rgb": pixels}, ["depth"], "batch_size=3 but the inputs hold 2 rows"),
        ({"rgb": pixels}, ["depth", "depth"], "a target is listed twice: ['depth', 'depth']"),
        ({"rgb": pixels.numpy()}, ["depth"], "input 'rgb': expected a torch.Tensor, got ndarray"),
        ({"rgb": pixels}, [TargetConfig(modality="depth", guidance=2.0, guidance_conditions=("caption",))],
         "target 'depth': guidance condition 'caption' is not among the inputs (rgb)"),
        ({"rgb": pixels}, [TargetConfig(modality="depth", condition_weights={"tok_rgb": 2.0})],
         "target 'depth': condition weight for 'tok_rgb', which is not among the inputs (rgb)"),
        ({"depth": torch.zeros((2, 16))}, ["caption"], "input 'depth': token ids must be integers, got torch.float32"),
        ({"depth": torch.full((2, 16), -1)}, ["caption"], "input 'depth': token ids must be in [0, 32)"),
        ({"depth": torch.full((2, 16), 32)}, ["caption"], "input 'depth': token ids must be in [0, 32)"),
        ({"depth": torch.zeros((2, 4, 4), dtype=torch.long)}, ["caption"],
         "input 'depth': expected token ids of shape (B, 16), got (2, 4, 4)"),
        ({"rgb": pixels[:, :1]}, ["depth"],
         "input 'rgb': expected normalised pixels of shape (B, 3, 16, 16), got (2, 1, 16, 16)"),
        ({"caption": torch.zeros((2, 12))}, ["depth"],
         "input 'caption': expected integer text ids of shape (B, L), got (2, 12) torch.float32"),
        ({"caption": torch.zeros((2, 3, 4), dtype=torch.long)}, ["depth"],
         "input 'caption': expected integer text ids of shape (B, L), got (2, 3, 4) torch.int64"),
        ({"rgb": {"tensor": pixels, "input_mask": torch.zeros((2, 15), dtype=torch.bool)}}, ["depth"],
         "input 'rgb': input_mask has shape (2, 15), expected (2, 16)"),
        ({"rgb": pixels}, [], "no targets: name at least one modality to generate"),
    ]
    for inputs, targets, message in cases:
        batch = {"batch_size": 3} if message.startswith("batch_size") else {}
        with pytest.raises(GenerationError, match=_exact(message)):
            sampler.generate(inputs, targets, seed=0, **batch)
    ok = sampler.generate({"depth": torch.full((2, 16), 31)}, ["gvec"], seed=0)  # the top id is valid
    assert ok.tokens["gvec"].shape == (2, 4)


# -- autoregressive stopping: a model whose next-token logits are fixed ----------------------------------------
def fixed_caption_logits(model, logits: torch.Tensor) -> Sampler:
    """A copy of ``model`` whose decoder output is one constant vector (``decoder_norm`` with weight 0 and
    bias e_0), so the caption's next-token logits are ``logits`` (V,) at every step."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.decoder_norm.weight.zero_()
        model.decoder_norm.bias.zero_()
        model.decoder_norm.bias[0] = 1.0
        w = model.decoder_embeddings["caption"].output_weight
        w.zero_()
        w[:, 0] = logits
    return Sampler(model)


def _peaked(token: int, V: int = 300) -> torch.Tensor:
    logits = torch.zeros(V)
    logits[token] = 20.0
    return logits


@pytest.mark.parametrize("stop_token", [3, 6])  # [EOS], and [S_2], the sentinel that closes span [S_1]
def test_decoding_stops_at_eos_or_at_the_closing_sentinel(tiny_model, pixels, stop_token):
    """A model that always predicts the stop token yields one step and an empty caption ("[EOS]" then padding,
    only position 0 visible); with ``stop_at_eos=False`` it emits it ``max_new_tokens`` times."""
    sampler = fixed_caption_logits(tiny_model, _peaked(stop_token))
    cfg = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=5)
    steps = list(sampler.iterate({"rgb": pixels}, [cfg], seed=0))
    assert len(steps) == 1 and steps[0].done
    res = sampler.generate({"rgb": pixels}, [cfg], seed=0)
    assert res.tokens["caption"].tolist() == [[3] + [0] * 11] * 2
    assert res.mod_dict["caption"]["input_mask"].tolist() == [[False] + [True] * 11] * 2
    full = sampler.generate({"rgb": pixels}, [cfg.replace(stop_at_eos=False)], seed=0).tokens["caption"]
    assert full.tolist() == [[stop_token] * 5 + [3] + [0] * 6] * 2


def test_other_sentinels_do_not_stop_decoding(tiny_model, pixels):
    """[S_1] (5) opens the span and [S_3] (7) is no closing token: decoding goes on to max_new_tokens."""
    for token in (5, 7, 4):
        sampler = fixed_caption_logits(tiny_model, _peaked(token))
        cfg = TargetConfig(modality="caption", temperature=0.0, max_new_tokens=4)
        steps = list(sampler.iterate({"rgb": pixels}, [cfg], seed=0))
        assert [s.done for s in steps] == [False, False, False, True]
        assert [s.step for s in steps] == [0, 1, 2, 3] and [s.num_steps for s in steps] == [4] * 4
        assert [tuple(s.committed.shape) for s in steps] == [(2, 1), (2, 2), (2, 3), (2, 4)]
        assert all(s.committed.dtype == torch.bool and bool(s.committed.all()) for s in steps)
        assert all(s.modality == "caption" for s in steps)
        assert steps[-1].tokens.tolist() == [[token] * 4] * 2
        out = sampler.generate({"rgb": pixels}, [cfg], seed=0)
        assert out.tokens["caption"].tolist() == [[token] * 4 + [3] + [0] * 7] * 2
        assert out.mod_dict["caption"]["input_mask"].tolist() == [[False] * 5 + [True] * 7] * 2


def test_rows_stop_independently_and_keep_their_own_length(tiny_model):
    """Next token: [EOS] with probability 1/4, else id 10. 64 rows, at most 8 new tokens: each row is
    ``10 * k, [EOS], [PAD]...`` with its own k, visible up to its EOS; the lengths are spread (P(k=0)=1/4,
    P(k>=8)=0.1) and decoding stops at the step where the last row stops."""
    logits = torch.full((300,), -1000.0)
    logits[3], logits[10] = torch.log(torch.tensor(0.25)), torch.log(torch.tensor(0.75))
    sampler = fixed_caption_logits(tiny_model, logits)
    pixels = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = TargetConfig(modality="caption", temperature=1.0, max_new_tokens=8)
    steps = list(sampler.iterate({"rgb": pixels}, [cfg], seed=1))
    res = sampler.generate({"rgb": pixels}, [cfg], seed=1)
    lengths = []
    for row, mask in zip(res.tokens["caption"].tolist(), res.mod_dict["caption"]["input_mask"].tolist()):
        k = row.index(3)
        assert row == [10] * k + [3] + [0] * (11 - k)
        assert mask == [False] * (k + 1) + [True] * (11 - k)
        lengths.append(k)
    assert 0 < lengths.count(0) < 32 and lengths.count(8) < 20 and len(set(lengths)) >= 5
    stopped_at = [min(k, 7) for k in lengths]  # a row stopping at step t emits EOS there
    assert len(steps) == max(stopped_at) + 1 and steps[-1].done and not steps[0].done


# -- the execution path: the CPU fast path of fourm_core.accel, or the model's own methods --------------------
def test_step_logits_use_a_transposed_table_that_follows_the_weights(tiny_model, pixels):
    model = copy.deepcopy(tiny_model)
    sampler = Sampler(model)
    inputs = sampler.prepare_inputs({"rgb": pixels})
    ids = torch.randint(10, 200, (2,))
    backend = sampler.backend

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        state = backend.start_sequence(inputs, "caption")
        logits = backend.next_logits(state, ids, 0)
        with torch.no_grad():  # the same hidden state through the model's own modules and (V, D) product
            state2 = backend.start_sequence(inputs, "caption")
            x, e = model.decoder_queries("caption", torch.zeros((2, 1), dtype=torch.long), ids[:, None])
            hidden = model.decode(x, e, state2.cache, use_cache=True)
        return logits, model.logits("caption", hidden[:, 0])

    fast, plain = step()
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    table = backend.path._output_table("caption")
    assert table.shape == (model.config.dim, model.vocab_sizes["caption"]) and table.is_contiguous()
    with torch.no_grad():
        model.decoder_embeddings["caption"].output_weight.mul_(2.0)
    fast2, plain2 = step()
    torch.testing.assert_close(fast2, plain2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast2, fast)


def test_the_backend_selects_one_path_per_device(tiny_model, monkeypatch):
    """On CPU the backend runs the accel fast path, chosen once; ``fast_path=False`` and any other device get
    the model's own methods, and nothing of the fast path (no proposal table, no routing) is used there."""
    from fourm_core.accel import CpuFastPath, select
    from fourm_core.generation.backend import GenerationPath, ModelBackend, PlainPath

    fast, plain = ModelBackend(tiny_model), ModelBackend(tiny_model, fast_path=False)
    assert isinstance(fast.path, CpuFastPath) and fast.path is fast.path and fast.path.kind == "cpu-fast"
    assert isinstance(plain.path, PlainPath) and plain.path.kind == "plain"
    assert isinstance(fast.path, GenerationPath) and isinstance(plain.path, GenerationPath)  # one protocol
    assert plain.proposal_table("caption") is None
    assert select(tiny_model, "cpu") is not None and select(tiny_model, "cuda") is None
    assert select(tiny_model, torch.device("meta")) is None
    assert select(torch.nn.Linear(2, 2), "cpu") is None  # only a FourM's structure is known to the fast path

    off_cpu = ModelBackend(tiny_model)
    monkeypatch.setattr(ModelBackend, "device", property(lambda self: torch.device("cuda", 0)))
    assert isinstance(off_cpu.path, PlainPath) and off_cpu.proposal_table("caption") is None


def test_plain_and_fast_paths_generate_the_same_tokens(tiny_model, pixels, tok_rgb):
    """Greedy captions (with and without guidance) and seeded MaskGIT maps agree between the CPU fast path and
    the model's own methods (the logits agree up to float32 summation order)."""
    from fourm_core.generation import ModelBackend

    fast, plain = Sampler(tiny_model), Sampler(ModelBackend(tiny_model, fast_path=False))
    inputs = {"rgb": pixels, "tok_rgb": tok_rgb}
    for cfg in (target_cfg("caption", max_new_tokens=6, stop_at_eos=False),
                target_cfg("caption", max_new_tokens=6, stop_at_eos=False, guidance=2.0),
                target_cfg("depth")):
        assert torch.equal(gen(fast, inputs, cfg), gen(plain, inputs, cfg)), cfg
    state_f = fast.backend.start_sequence(fast.prepare_inputs(inputs), "caption")
    state_p = plain.backend.start_sequence(plain.prepare_inputs(inputs), "caption")
    assert state_f.plans is not None and state_p.plans is None
    ids = torch.tensor([5, 5])
    torch.testing.assert_close(fast.backend.next_logits(state_f, ids, 0), plain.backend.next_logits(state_p, ids, 0),
                               atol=1e-5, rtol=1e-5)
