"""fourm_core.masking: configuration (YAML ``transfer`` key, errors that name the key) and the deterministic parts
of the masker pinned to concrete values (token counts, transfer layouts, budget splits that need no draw)."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from fourm_core.masking import (
    Masker,
    MaskingConfig,
    MaskingError,
    MixtureComponent,
    TextVocabInfo,
    TransferConfig,
    count_tokens,
)
from fourm_registry import ModalitySet, ModalitySpec

SER = "fourm_core.masking:Masker"
EOS, PAD, S0 = 3, 0, 4


def _mods(*, decoder_only: bool = False) -> ModalitySet:
    specs = [
        ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=4, channels=3, aliases=("rgb@224",)),
        ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=32, aliases=("tok_depth@224",)),
        ModalitySpec(name="glob", kind="vector", num_tokens=4, vocab_size=16),
        ModalitySpec(name="caption", kind="sequence", max_length=10, vocab_size=1000, serializer=SER),
        ModalitySpec(name="t5", kind="embedding_sequence", max_length=6, embed_dim=5),
    ]
    if decoder_only:
        specs.append(ModalitySpec(name="sem", kind="image", grid=(4, 4), vocab_size=8, encoder=False))
    return ModalitySet(specs)


def _batch(ms: ModalitySet, bsz: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for s in ms.specs:
        if s.kind == "pixels":
            out[s.name] = torch.randn(bsz, s.channels, *s.image_size, generator=g)
        elif s.kind in ("image", "vector"):
            out[s.name] = torch.randint(0, s.vocab_size, (bsz, s.num_tokens), generator=g)
        elif s.kind == "sequence":
            t = torch.zeros(bsz, s.max_length, dtype=torch.long)
            for b in range(bsz):
                n = 2 + b % (s.max_length - 2)
                t[b, :n] = torch.arange(300, 300 + n)
                t[b, n] = EOS
            out[s.name] = t
        else:
            out[s.name] = torch.randn(bsz, s.max_length, s.embed_dim, generator=g)
    return out


# ------------------------------------------------------------------------------------------------------------
# the YAML `transfer` key (attrs field `transfer`)
# ------------------------------------------------------------------------------------------------------------


def test_yaml_transfer_key_builds_fixed_masking(tmp_path):
    """``transfer: {inputs, targets}`` in YAML becomes ``config.transfer``; catches the key not mapped (it would
    raise as unknown) or mapped to the wrong field."""
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent("""
        transfer:
          inputs: [rgb@224, caption]
          targets: [tok_depth@224]
    """))
    cfg = MaskingConfig.from_yaml(p)
    assert cfg.transfer == TransferConfig(inputs=("rgb@224", "caption"), targets=("tok_depth@224",))
    assert cfg == MaskingConfig.for_transfer(inputs=["rgb@224", "caption"], targets=["tok_depth@224"])
    # written back under the YAML name, never as `fixed`, and read back equal
    d = cfg.to_dict()
    assert "fixed" not in d and d["transfer"] == {"inputs": ["rgb@224", "caption"], "targets": ["tok_depth@224"]}
    assert MaskingConfig.from_dict(d) == cfg
    # null means random masking
    assert MaskingConfig.from_dict({"transfer": None}).transfer is None
    assert MaskingConfig.from_dict({}).to_dict()["transfer"] is None


def test_transfer_from_yaml_masks_inputs_fully_and_targets_fully(tmp_path):
    """Read from YAML with reference (alias) names: the inputs are fully visible, the targets fully predicted,
    everything else unused; the token counts are those of the transfer modalities whatever input_tokens says."""
    p = tmp_path / "t.yaml"
    p.write_text("input_tokens: 3\ntarget_tokens: 2\ntransfer: {inputs: [rgb@224, caption], targets: [tok_depth@224]}\n")
    ms = _mods()
    masker = Masker(ms, MaskingConfig.from_yaml(p))
    assert (masker.num_encoder_tokens, masker.num_decoder_tokens) == (16 + 10, 16)
    out = masker(_batch(ms, 4))
    assert not out["rgb"]["input_mask"].any() and out["rgb"]["target_mask"].all()
    assert out["depth"]["input_mask"].all() and not out["depth"]["target_mask"].any()
    assert out["depth"]["decoder_attention_mask"].tolist() == [[16] + [0] * 15] * 4
    for name in ("glob", "t5"):
        assert out[name]["input_mask"].all() and out[name]["target_mask"].all()
    cap = out["caption"]
    assert cap["target_mask"].all()
    assert cap["tensor"][1].tolist() == [300, 301, 302, EOS] + [PAD] * 18
    assert (~cap["input_mask"][1]).nonzero().flatten().tolist() == [0, 1, 2, 3]


def test_transfer_masks_do_not_depend_on_the_generator():
    """Transfer masking has nothing random: any seed (or none) gives the same masks; a sequence target sits at
    ``max_length`` (not at a drawn budget), as ``[S_1] tokens [S_2]``."""
    ms = _mods()
    cfg = MaskingConfig.for_transfer(inputs=["depth"], targets=["caption", "glob"])
    masker = Masker(ms, cfg)
    batch = _batch(ms, 3)
    a = masker(batch)
    b = masker(batch, generator=torch.Generator().manual_seed(123))
    for k in a:
        for f in a[k]:
            assert torch.equal(a[k][f], b[k][f]), (k, f)
    cap = a["caption"]
    assert cap["tensor"][0].tolist() == [PAD] * 10 + [S0 + 1, 300, 301, EOS, S0 + 2] + [PAD] * 7
    assert (~cap["target_mask"][0]).nonzero().flatten().tolist() == [10, 11, 12, 13, 14]
    assert cap["input_mask"].all()
    assert a["glob"]["decoder_attention_mask"].tolist() == [[4, 0, 0, 0]] * 3
    assert (masker.num_encoder_tokens, masker.num_decoder_tokens) == (16, 11 + 4)
    assert count_tokens(ms, cfg) == (16, 15)


def test_transfer_absent_sample_is_neither_input_nor_target():
    ms = _mods()
    masker = Masker(ms, MaskingConfig.for_transfer(inputs=["depth"], targets=["glob"]))
    out = masker(_batch(ms, 3), present={"depth": torch.tensor([True, False, True]),
                                         "glob": torch.tensor([False, True, True])})
    assert out["depth"]["input_mask"].all(1).tolist() == [False, True, False]
    assert out["glob"]["target_mask"].all(1).tolist() == [True, False, False]
    assert out["glob"]["decoder_attention_mask"][:, 0].tolist() == [0, 4, 4]


# ------------------------------------------------------------------------------------------------------------
# bad configs: the error names the key
# ------------------------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ("abc", r"masking config: expected a mapping, got str"),
    ({"input_token": 3}, r"masking config: unknown key\(s\) 'input_token'; valid keys: input_tokens, target_tokens, "
                         r"mixture, modalities, transfer, fill_budget, allow_unknown_modalities, inputs, targets$"),
    # the attrs field is named after the YAML key: `fixed` is not a key, and a user's key is quoted verbatim
    ({"fixed": {"inputs": ["rgb"], "targets": ["depth"]}},
     r"masking config: unknown key\(s\) 'fixed'; valid keys: .*modalities, transfer, fill_budget"),
    ({"prefixed_tokens": 3}, r"masking config: unknown key\(s\) 'prefixed_tokens'; valid keys:"),
    ({"input_tokens": True}, r"masking: input_tokens: expected an int or \[min, max\], got True"),
    ({"input_tokens": "many"}, r"masking: input_tokens: expected an int or \[min, max\] of ints, got 'many'"),
    ({"input_tokens": [1, 2, 3]}, r"masking: input_tokens: expected an int or \[min, max\] of ints"),
    ({"target_tokens": [-1, 3]}, r"masking: target_tokens: range \[-1, 3\] must satisfy 0 <= min <= max"),
    ({"mixture": {"name": "a"}}, r"masking: mixture must be a list of components"),
    ({"mixture": []}, r"masking: mixture needs at least one component"),
    ({"mixture": [{"wieght": 2}]}, r"masking: mixture\[0\]: unknown key\(s\) 'wieght'; valid keys: name, weight, "
                                   r"input_alphas, target_alphas, keep, full_input"),
    ({"mixture": [{"name": "m", "weight": 0}]}, r"mixture component m: weight must be a positive number, got 0"),
    ({"mixture": [{"weight": True}]}, r"mixture component \?: weight must be a positive number, got True"),
    ({"mixture": [{"name": "m", "input_alphas": "lots"}]},
     r"mixture component m: input_alphas: expected a number or a mapping modality -> alpha"),
    ({"mixture": [{"target_alphas": {"depth": "x"}}]}, r"target_alphas: alpha of 'depth' must be a number, got 'x'"),
    ({"mixture": [{"input_alphas": math.nan}]}, r"input_alphas: alpha of '\*' must be finite and >= 0, got nan"),
    ({"mixture": [{"input_alphas": {"depth": math.inf}}]}, r"alpha of 'depth' must be finite and >= 0, got inf"),
    ({"mixture": [{"name": "m", "keep": {"caption": "most"}}]},
     r"mixture component m: keep scheme 'most' of 'caption' is not one of random, all, binary"),
    ({"modalities": ["caption"]}, r"masking: modalities must be a mapping name -> settings"),
    ({"modalities": {"caption": "all"}}, r"masking: modalities.caption: expected a mapping, got str"),
    ({"modalities": {"caption": {"span": "words"}}}, r"span scheme 'words' is not one of simple, chunked"),
    ({"modalities": {"caption": {"span": "chunked"}}}, r"span 'chunked' needs chunk_start_tokens"),
    ({"modalities": {"depth": {"min_tokens": -1}}}, r"setting 'min_tokens' must be a non-negative int or null, got -1"),
    ({"modalities": {"depth": {"max_tokens": 2.5}}}, r"setting 'max_tokens' must be a non-negative int or null"),
    ({"modalities": {"depth": {"max_tokens": True}}}, r"setting 'max_tokens' must be a non-negative int or null"),
    ({"transfer": ["rgb"]}, r"masking: transfer: expected a mapping, got list"),
    ({"transfer": {"inputs": ["rgb"], "target": ["depth"]}},
     r"masking: transfer: unknown key\(s\) 'target'; valid keys: inputs, targets"),
    ({"transfer": {"inputs": [], "targets": []}}, r"transfer masking needs at least one input or target modality"),
    ({"transfer": {"inputs": ["depth"], "targets": ["depth", "glob"]}}, r"transfer masking: depth cannot be both"),
]


@pytest.mark.parametrize("data,message", BAD_CONFIGS, ids=[m[:40] for _, m in BAD_CONFIGS])
def test_bad_config_raises_naming_the_key(data, message):
    """Each bad config raises MaskingError (a ValueError) whose message names the offending key and value."""
    with pytest.raises(MaskingError, match=message):
        MaskingConfig.from_dict(data)


def test_yaml_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("transfer: {inputs: [rgb], outputs: [depth]}\n")
    with pytest.raises(MaskingError, match=rf"^{p}: masking: transfer: unknown key\(s\) 'outputs'"):
        MaskingConfig.from_yaml(p)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert MaskingConfig.from_yaml(empty) == MaskingConfig()


BAD_MASKERS = [
    ({"mixture": [{"input_alphas": {"normals": 1.0}}]},
     r"masking config mixture\[0\].input_alphas: unknown modality 'normals'; the masker's modalities are caption, "
     r"depth, glob, rgb, sem, t5 \(set allow_unknown_modalities: true"),
    ({"mixture": [{}, {"target_alphas": {"nrm": 1.0}}]}, r"mixture\[1\].target_alphas: unknown modality 'nrm'"),
    ({"mixture": [{"keep": {"cap": "all"}}]}, r"mixture\[0\].keep: unknown modality 'cap'"),
    ({"mixture": [{"full_input": ["sem"]}]}, r"mixture\[0\].full_input: modality 'sem' is not an encoder modality"),
    ({"modalities": {"dept": {}}}, r"masking config modalities: unknown modality 'dept'"),
    ({"transfer": {"inputs": ["capt"], "targets": ["depth"]}}, r"transfer.inputs: unknown modality 'capt'"),
    ({"transfer": {"inputs": ["depth"], "targets": ["glb"]}}, r"transfer.targets: unknown modality 'glb'"),
    ({"transfer": {"inputs": ["sem"], "targets": ["depth"]}},
     r"transfer masking: modality 'sem' \(image\) cannot be an encoder input"),
    ({"transfer": {"inputs": ["depth"], "targets": ["t5"]}},
     r"transfer masking: modality 't5' \(embedding_sequence\) cannot be a decoder target"),
    ({"input_tokens": 4, "modalities": {"depth": {"min_tokens": 3}, "glob": {"min_tokens": 2}}},
     r"min_tokens sum to 5, more than the smallest input budget 4"),
    ({"input_tokens": [6, 9], "target_tokens": [2, 9], "modalities": {"sem": {"min_tokens": 3}}},
     r"min_tokens sum to 3, more than the smallest target budget 2"),
    ({"modalities": {"caption": {"span": "chunked", "chunk_start_tokens": ["v*"]}}},
     r"modality 'caption': chunk start prefixes need the text vocabulary"),
]


@pytest.mark.parametrize("data,message", BAD_MASKERS, ids=[m[:40] for _, m in BAD_MASKERS])
def test_config_the_masker_rejects_names_the_key(data, message):
    with pytest.raises(MaskingError, match=message):
        Masker(_mods(decoder_only=True), MaskingConfig.from_dict(data))


def test_unknown_modalities_are_ignored_only_when_allowed():
    cfg = {"mixture": [{"input_alphas": {"normals": 1.0, "depth": 2.0}}], "modalities": {"normals": {}},
           "transfer": None, "allow_unknown_modalities": True}
    masker = Masker(_mods(), MaskingConfig.from_dict(cfg))
    assert masker.alpha_in[0].tolist() == [0.0, 2.0, 0.0, 0.0, 0.0]  # '*' defaults to 0; normals dropped


def test_min_tokens_equal_to_the_budget_is_accepted():
    """The min_tokens check is strict (> budget): a sum equal to the smallest budget is fine, and is honoured."""
    ms = _mods()
    cfg = MaskingConfig.from_dict({"input_tokens": [5, 9], "target_tokens": [5, 5],
                                   "modalities": {"depth": {"min_tokens": 3}, "glob": {"min_tokens": 2}}})
    out = Masker(ms, cfg)(_batch(ms, 64), generator=torch.Generator().manual_seed(0))
    assert ((~out["depth"]["input_mask"]).sum(1) >= 3).all() and ((~out["glob"]["input_mask"]).sum(1) >= 2).all()
    # targets: the minimum holds as far as the tokens the input left allow
    assert ((~out["glob"]["target_mask"]).sum(1) >= (4 - (~out["glob"]["input_mask"]).sum(1)).clamp(max=2)).all()


def test_reference_alphas_errors_and_components():
    with pytest.raises(MaskingError, match="reference alphas: expected a mapping of modality"):
        MaskingConfig.from_reference({})
    with pytest.raises(MaskingError, match=r"every modality needs the same number of alphas, got \[1, 2\]"):
        MaskingConfig.from_reference({"depth": {"input_alphas": [1.0, 0.5], "target_alphas": [1.0]}})
    with pytest.raises(MaskingError, match="3 sampling_weights for 2 mixture components"):
        MaskingConfig.from_reference({"sampling_weights": [1, 1, 1], "alphas_mixture": {
            "depth": {"input_alphas": [1.0, 0.5], "target_alphas": [1.0, 0.0]}}})
    cfg = MaskingConfig.from_reference({"sampling_weights": [2, 1], "alphas_mixture": {
        "depth": {"input_alphas": [1.0, 0.5], "target_alphas": [1.0, 0.0], "keep": ["all", "binary"]},
        "rgb": {"input_alphas": [0.0, 3.0], "target_alphas": [0.0, 0.0]}}}, input_tokens=[2, 4], target_tokens=6)
    assert cfg.input_tokens == (2, 4) and cfg.target_tokens == (6, 6)
    assert cfg.mixture == (
        MixtureComponent(name="component0", weight=2.0, input_alphas={"*": 0.0, "depth": 1.0, "rgb": 0.0},
                         target_alphas={"*": 0.0, "depth": 1.0, "rgb": 0.0}, keep={"depth": "all"}),
        MixtureComponent(name="component1", weight=1.0, input_alphas={"*": 0.0, "depth": 0.5, "rgb": 3.0},
                         target_alphas={"*": 0.0, "depth": 0.0, "rgb": 0.0}, keep={"depth": "binary"}))
    # without sampling_weights every component weighs 1
    bare = MaskingConfig.from_reference({"depth": {"input_alphas": [1.0, 0.5], "target_alphas": [1.0, 0.0]}})
    assert [c.weight for c in bare.mixture] == [1.0, 1.0]


def test_to_dict_is_pinned():
    cfg = MaskingConfig.from_dict({
        "input_tokens": [3, 7], "target_tokens": None, "fill_budget": False,
        "mixture": [{"name": "x", "weight": 2, "input_alphas": {"depth": 1}, "target_alphas": 0.5,
                     "keep": {"caption": "all"}, "full_input": ["glob"]}],
        "modalities": {"caption": {"min_tokens": 1, "span": "chunked", "chunk_start_tokens": ["v0=*"]}}})
    assert cfg.to_dict() == {
        "input_tokens": [3, 7], "target_tokens": None,
        "mixture": [{"name": "x", "weight": 2, "input_alphas": {"depth": 1.0, "*": 0.0},
                     "target_alphas": {"*": 0.5}, "keep": {"caption": "all"}, "full_input": ["glob"]}],
        "modalities": {"caption": {"min_tokens": 1, "max_tokens": None, "keep": "random", "span": "chunked",
                                   "chunk_start_tokens": ["v0=*"]}},
        "transfer": None, "fill_budget": False, "allow_unknown_modalities": False}
    assert MaskingConfig.from_dict(cfg.to_dict()) == cfg
    assert MaskingConfig().input_tokens == (128, 128) and MaskingConfig().target_tokens == (128, 128)
    assert MaskingConfig().mixture == (MixtureComponent(name="all2all"),)
    assert MaskingConfig.from_dict(None) == MaskingConfig()


# ------------------------------------------------------------------------------------------------------------
# deterministic parts of the masker pinned
# ------------------------------------------------------------------------------------------------------------


def test_token_counts_are_pinned():
    """Encoder/decoder lengths: the budget maxima, plus the largest full_input component; with no target budget
    every decodable slot (a sequence's max_length + 1)."""
    ms = _mods()
    assert count_tokens(ms, MaskingConfig()) == (128, 128)
    assert count_tokens(ms, MaskingConfig(input_tokens=(4, 9), target_tokens=(2, 5))) == (9, 5)
    assert count_tokens(ms, MaskingConfig(input_tokens=4, target_tokens=None)) == (4, 16 + 4 + 11)
    full = MaskingConfig.from_dict({"input_tokens": 5, "target_tokens": 5, "mixture": [
        {"full_input": ["caption"]}, {"full_input": ["depth", "glob"]}, {}]})
    assert count_tokens(ms, full) == (5 + 20, 5)


def test_allocation_without_room_to_draw_is_exact():
    """Budgets that the caps decide leave nothing to chance: depth (max_tokens 3) and glob (4 slots) with 20
    input tokens get 3 and 4 inputs every time; of 20 target tokens depth takes 3 (max_tokens caps targets
    too) and glob none (no token left). Catches caps ignored and budget not redistributed."""
    ms = _mods().subset(["depth", "glob"])
    cfg = MaskingConfig.from_dict({"input_tokens": 20, "target_tokens": 20,
                                   "modalities": {"depth": {"max_tokens": 3}}})
    out = Masker(ms, cfg)(_batch(ms, 32), generator=torch.Generator().manual_seed(0))
    assert (~out["depth"]["input_mask"]).sum(1).tolist() == [3] * 32
    assert (~out["glob"]["input_mask"]).sum(1).tolist() == [4] * 32
    assert (~out["depth"]["target_mask"]).sum(1).tolist() == [3] * 32  # max_tokens caps targets as well
    assert (~out["glob"]["target_mask"]).sum(1).tolist() == [0] * 32  # no room left


def test_budget_fills_the_last_free_slot():
    """Two 4-token vectors with even shares and 7 input tokens: the floors give 3 + 3 and the last token must
    go to a modality with exactly one free slot; every sample ends with 4 + 3 or 3 + 4 (7 in all, both ways).
    Catches leftover tokens handed only to modalities with more than one free slot."""
    ms = ModalitySet([ModalitySpec(name=n, kind="vector", num_tokens=4, vocab_size=16) for n in ("u", "v")])
    cfg = MaskingConfig.from_dict({"input_tokens": 7, "target_tokens": 1, "mixture": [{"input_alphas": 1e5}]})
    out = Masker(ms, cfg)(_batch(ms, 64), generator=torch.Generator().manual_seed(5))
    got = [tuple(int(x) for x in (~out[n]["input_mask"]).sum(1)) for n in ("u", "v")]
    pairs = set(zip(*got))
    assert pairs == {(4, 3), (3, 4)}, pairs
    # and the one target token lands in the modality with a token left
    for n in ("u", "v"):
        assert ((~out[n]["target_mask"]).sum(1) == 4 - (~out[n]["input_mask"]).sum(1)).all()


def test_no_target_budget_makes_every_other_token_a_target():
    """``target_tokens: null``: every token that is not an input is a target (modalities with target alpha > 0)."""
    ms = _mods().subset(["depth", "glob"])
    cfg = MaskingConfig.from_dict({"input_tokens": [0, 20], "target_tokens": None,
                                   "mixture": [{"input_alphas": 1.0, "target_alphas": {"depth": 1.0}}]})
    out = Masker(ms, cfg)(_batch(ms, 32), generator=torch.Generator().manual_seed(1))
    d = out["depth"]
    assert ((~d["input_mask"]) ^ (~d["target_mask"])).all()
    assert out["glob"]["target_mask"].all()
    assert torch.equal(d["decoder_attention_mask"].sum(1), (~d["target_mask"]).sum(1).int())


def test_fill_budget_gives_unused_sequence_budget_to_images():
    """A sequence uses at most its budget (kept tokens + sentinels); with fill_budget the rest goes to the image
    modalities, so the total input equals the budget; without it some samples fall short."""
    ms = _mods().subset(["depth", "caption"])
    batch = _batch(ms, 64)
    totals = {}
    for fill in (True, False):
        cfg = MaskingConfig.from_dict({"input_tokens": 14, "target_tokens": 4, "fill_budget": fill})
        out = Masker(ms, cfg)(batch, generator=torch.Generator().manual_seed(2))
        totals[fill] = sum((~v["input_mask"]).sum(1) for v in out.values())
    assert totals[True].tolist() == [14] * 64
    assert (totals[False] <= 14).all() and (totals[False] < 14).any()


def test_full_input_modality_is_outside_the_budget():
    """A ``full_input`` modality is entirely visible and never a target, and the budget still goes to the others."""
    ms = _mods().subset(["depth", "glob"])
    cfg = MaskingConfig.from_dict({"input_tokens": 5, "target_tokens": 6,
                                   "mixture": [{"full_input": ["glob"]}]})
    masker = Masker(ms, cfg)
    assert masker.num_encoder_tokens == 9
    out = masker(_batch(ms, 16), generator=torch.Generator().manual_seed(3))
    assert not out["glob"]["input_mask"].any() and out["glob"]["target_mask"].all()
    assert (~out["depth"]["input_mask"]).sum(1).tolist() == [5] * 16
    assert (~out["depth"]["target_mask"]).sum(1).tolist() == [6] * 16


def test_zero_alpha_modality_gets_nothing():
    ms = _mods().subset(["depth", "glob"])
    cfg = MaskingConfig.from_dict({"input_tokens": 6, "target_tokens": 3,
                                   "mixture": [{"input_alphas": {"depth": 1.0}, "target_alphas": {"glob": 1.0}}]})
    out = Masker(ms, cfg)(_batch(ms, 16), generator=torch.Generator().manual_seed(4))
    assert out["glob"]["input_mask"].all() and out["depth"]["target_mask"].all()
    assert (~out["depth"]["input_mask"]).sum(1).tolist() == [6] * 16
    assert (~out["glob"]["target_mask"]).sum(1).tolist() == [3] * 16


def test_chunk_start_prefixes_resolve_through_the_vocabulary():
    vocab = {"[PAD]": 0, "v0=1": 204, "v0=2": 205, "v1=1": 206, "box": 207}
    ms = _mods().subset(["caption"])
    cfg = MaskingConfig.from_dict({"modalities": {"caption": {"span": "chunked", "chunk_start_tokens": ["v0=*", "box"]}}})
    masker = Masker(ms, cfg, text=TextVocabInfo(token_to_id=vocab))
    assert masker.mods[0].chunk_ids == (204, 205, 207) and masker.mods[0].chunk_prefixes == ("v0=",)


def test_masker_input_checks():
    ms = _mods()
    masker = Masker(ms, MaskingConfig(input_tokens=4, target_tokens=4))
    good = _batch(ms, 2)
    with pytest.raises(MaskingError, match="Masker needs a fourm_registry.ModalitySet, got list"):
        Masker(list(ms.specs))
    with pytest.raises(MaskingError, match="the batch must be a non-empty mapping"):
        masker({})
    with pytest.raises(MaskingError, match=r"'rgb' \(pixels\) must be float \(B, 3, 16, 16\), got int64"):
        masker({**good, "rgb": good["rgb"].long()})
    with pytest.raises(MaskingError, match=r"'t5' \(embedding_sequence\) must be float \(B, 6, 5\)"):
        masker({**good, "t5": good["t5"][:, :, :4]})
    with pytest.raises(MaskingError, match=r"'caption' \(sequence\) must be int64 \(B, 10\)"):
        masker({**good, "caption": good["caption"].float()})
    with pytest.raises(MaskingError, match="modality 'glob' must be a torch.Tensor, got list"):
        masker({**good, "glob": [[1, 2, 3, 4]]})
    with pytest.raises(MaskingError, match="'glob' has token ids in \\[-1, 3\\] outside the vocabulary"):
        masker({**good, "glob": torch.tensor([[0, 1, 2, 3], [-1, 0, 0, 0]])})
    with pytest.raises(MaskingError, match="present has unknown modality 'nrm'"):
        masker(good, present={"nrm": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(MaskingError, match=r"present\['depth'\] must be a BoolTensor of shape \(2,\), got int64"):
        masker(good, present={"depth": torch.ones(2, dtype=torch.long)})
    # aliases work in the batch and in present, and the result uses the canonical names
    out = masker({"tok_depth@224": good["depth"]}, present={"tok_depth@224": torch.tensor([True, False])})
    assert set(out) == {"depth"} and out["depth"]["input_mask"][1].all()
    # the text vocabulary size bounds sequence ids
    small = Masker(ms, MaskingConfig(), text=TextVocabInfo(vocab_size=300))
    with pytest.raises(MaskingError, match=r"'caption' has token ids in \[0, 309\] outside the vocabulary \[0, 300\)"):
        small({"caption": torch.where(good["caption"] == 300, 309, good["caption"])})


def test_every_modality_kind_has_one_masking_layout():
    """The masker picks each modality's layout once, the one its kind adapter names: every registry kind names
    a layout of the table, the decodable kinds are the registry's, and a kind without one raises naming the
    modality."""
    from fourm_core.kinds import ADAPTERS
    from fourm_core.masking.layouts import LAYOUTS, layout_for
    from fourm_registry.specs import DECODABLE_KINDS, KINDS

    assert set(ADAPTERS) == set(KINDS)
    assert all(ADAPTERS[k].mask_layout in LAYOUTS for k in KINDS)
    masker = Masker(_mods(), MaskingConfig())
    assert {m.kind for m in masker.mods if m.can_target} == set(DECODABLE_KINDS) & {m.kind for m in masker.mods}
    assert all(m.layout is LAYOUTS[ADAPTERS[m.kind].mask_layout] for m in masker.mods)
    odd = ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=32)
    object.__setattr__(odd, "kind", "hologram")  # bypass the registry's kind check
    with pytest.raises(MaskingError, match=r"modality 'depth': kind 'hologram' has no masking layout; the masker "
                                           r"knows image, vector, sequence, pixels, embedding_sequence"):
        layout_for(odd)
