"""The masker's layout of a fully masked sequence vs what the autoregressive sampler conditions on.

At inference, rgb → color_palette starts from the encoder input "[S_1]" (one visible sentinel, position 0)
and decodes from "[S_1]" until "[EOS]" or "[S_2]". Training must show the model that exact case: these tests
check that the quickstart's masking mixture produces it, token for token, and often.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_core.masking import MaskingConfig, Masker
from fourm_registry import get_modalities

NAMES = ("rgb", "tok_rgb", "canny_edge", "color_palette", "metadata")
SEQ = ("color_palette", "metadata")
EOS, S1, S2, PAD = 3, 5, 6, 0


@pytest.fixture(scope="module")
def mods():
    return get_modalities().subset(list(NAMES))


def _batch(mods, bsz: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {"rgb": torch.randn(bsz, 3, 224, 224, generator=g)}
    for n in ("tok_rgb", "canny_edge"):
        out[n] = torch.randint(0, 256, (bsz, 196), generator=g)
    for n in SEQ:
        length = mods[n].max_length
        ids = torch.full((bsz, length), PAD, dtype=torch.long)
        n_tok = torch.randint(8, length - 1, (bsz,), generator=g)
        words = torch.randint(204, 4000, (bsz, length), generator=g)
        pos = torch.arange(length)[None]
        ids = torch.where(pos < n_tok[:, None], words, ids)
        ids.scatter_(1, n_tok[:, None], EOS)
        out[n] = ids
    return out


def _sampler_conditioning(mods, name: str) -> dict[str, torch.Tensor]:
    """What the sampler puts in the encoder for a sequence target (captured at ``start_sequence``)."""
    from fourm_core.generation import Sampler, TargetConfig
    from fourm_core.model import build_model

    torch.manual_seed(0)
    model = build_model(mods, {"preset": "debug", "dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2},
                        vocab_sizes={"tok_rgb": 256, "canny_edge": 256}).eval()
    sampler = Sampler(model, modalities=mods)
    seen: dict[str, dict[str, torch.Tensor]] = {}
    original = sampler.backend.start_sequence

    def spy(mod_dict, target):
        seen.update({k: {kk: vv.clone() for kk, vv in v.items()} for k, v in mod_dict.items()})
        return original(mod_dict, target)

    sampler.backend.start_sequence = spy
    sampler.generate({"rgb": torch.randn(2, 3, 224, 224)}, [TargetConfig(modality=name, max_new_tokens=2)], seed=0)
    assert sampler.first_sentinel_id == S1 and sampler.eos_id == EOS
    return seen[name]


def _visible(entry: dict[str, torch.Tensor], row: int) -> list[tuple[int, int]]:
    """(position, id) of the encoder-visible tokens of one row."""
    vis = (~entry["input_mask"][row].bool()).nonzero().flatten().tolist()
    return [(p, int(entry["tensor"][row, p])) for p in vis]


def _target(entry: dict[str, torch.Tensor], row: int) -> list[int]:
    return entry["tensor"][row][~entry["target_mask"][row].bool()].tolist()


@pytest.mark.parametrize("name", SEQ)
def test_quickstart_masking_lays_out_fully_masked_sequences_as_the_sampler_reads_them(mods, name):
    from fourm_quickstart.stages import quickstart_masking

    cond = _sampler_conditioning(mods, name)
    sampler_visible = _visible(cond, 0)
    assert sampler_visible == [(0, S1)], sampler_visible  # the sampler's conditioning: "[S_1]" at position 0

    cfg = MaskingConfig.from_dict(quickstart_masking(NAMES, SEQ, input_tokens=(64, 128), target_tokens=(64, 128)))
    bsz = 512
    batch = _batch(mods, bsz)
    out = Masker(mods, cfg)(batch, generator=torch.Generator().manual_seed(1))[name]
    full = complete = 0
    for b in range(bsz):
        vis = _visible(out, b)
        if len(vis) == 1 and 4 <= vis[0][1] < 204:
            # one visible sentinel: the whole sequence (words and [EOS]) is one masked span
            assert vis == sampler_visible, vis
            tgt = _target(out, b)
            if not tgt:  # masked but not predicted in this sample (a target-less component)
                continue
            full += 1
            words = batch[name][b][batch[name][b] != PAD].tolist()  # tokens then [EOS]
            assert tgt[0] == S1  # the sampler's first decoder input
            assert tgt[1:1 + len(words)] == words[: len(tgt) - 1]
            if len(tgt) == len(words) + 2:
                assert tgt[-2:] == [EOS, S2]  # ends with what stops the sampler
                complete += 1
        else:
            # a target always comes with an encoder input (the sampler never predicts from an empty one)
            assert len(vis) > 0 or not _target(out, b), f"row {b}: {name} is a target with no encoder input"
    # the rgb2all component (weight 0.5) makes the fully masked case frequent, mostly with the whole target
    assert full / bsz > 0.3, full
    assert complete / full > 0.5, (complete, full)


def test_core_masker_gives_a_zero_budget_sequence_no_encoder_token(mods):
    """The core masker's layout when a sequence's input budget is 0 (input alpha 0, or a zero Dirichlet share):
    no encoder token at all, with the complete sequence as target — a layout the sampler never produces (it
    always shows "[S_1]"). The quickstart's ``min_tokens: 1`` works around it. If this test fails, the masker
    now matches the sampler and the workaround can go."""
    cfg = MaskingConfig.from_dict({
        "input_tokens": [64, 64], "target_tokens": [128, 128],
        "mixture": [{"name": "rgb2palette", "input_alphas": {"*": 0.0, "rgb": 1.0},
                     "target_alphas": {"*": 0.0, "color_palette": 1.0}}]})
    batch = _batch(mods, 8)
    out = Masker(mods, cfg)(batch, generator=torch.Generator().manual_seed(0))["color_palette"]
    for b in range(8):
        assert _visible(out, b) == []
        words = batch["color_palette"][b][batch["color_palette"][b] != PAD].tolist()
        assert _target(out, b) == [S1, *words, S2]


def test_quickstart_masking_is_a_valid_config_for_any_modality_set(mods):
    from fourm_quickstart.stages import quickstart_masking

    d = quickstart_masking(("rgb", "tok_rgb", "canny_edge"), (), input_tokens=(32, 64), target_tokens=(32, 64))
    assert [c["name"] for c in d["mixture"]] == ["rgb2all", "edges+palette2rgb"]
    assert d["modalities"] == {}
    Masker(get_modalities().subset(["rgb", "tok_rgb", "canny_edge"]), MaskingConfig.from_dict(d))
    d = quickstart_masking(NAMES, SEQ, input_tokens=(64, 128), target_tokens=(64, 128))
    assert d["modalities"] == {n: {"min_tokens": 1} for n in SEQ}
    assert d["mixture"][1]["keep"] == {"color_palette": "all"}
    np.testing.assert_allclose(sum(c["weight"] for c in d["mixture"]), 1.0)
    # a sequence that is not an rgb target is only an input (of edges + palette -> rgb): rgb2all neither shows
    # nor predicts it
    d = quickstart_masking(NAMES, SEQ, input_tokens=(64, 128), target_tokens=(64, 128), rgb_targets=("canny_edge",))
    rgb2all = d["mixture"][0]
    assert rgb2all["name"] == "rgb2all" and rgb2all["target_alphas"]["canny_edge"] == 0.5
    for n in SEQ:
        assert rgb2all["target_alphas"].get(n, 0.0) == 0.0 and rgb2all["input_alphas"].get(n, 0.0) == 0.0
    assert d["mixture"][1]["input_alphas"]["color_palette"] == 1.0
    cfg = MaskingConfig.from_dict(d)
    batch = _batch(mods, 64)
    out = Masker(mods, cfg)(batch, generator=torch.Generator().manual_seed(2))
    for b in range(64):
        if _target(out["canny_edge"], b):  # an rgb2all row: no palette anywhere
            assert not _visible(out["color_palette"], b) and not _target(out["color_palette"], b)
    # nothing predicted from rgb (the quickstart's default): edges + palette -> rgb alone, weight 1
    d = quickstart_masking(NAMES, SEQ, input_tokens=(64, 128), target_tokens=(64, 128), rgb_targets=())
    assert [(c["name"], c["weight"]) for c in d["mixture"]] == [("edges+palette2rgb", 1.0)]
    Masker(mods, MaskingConfig.from_dict(d))
