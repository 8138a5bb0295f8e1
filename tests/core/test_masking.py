"""Tests of fourm_core.masking: budgets, disjointness, min/max, span round trip, absent modalities, transfer."""

from __future__ import annotations

import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fourm_core.masking import (
    Masker,
    MaskingConfig,
    MaskingError,
    ModalityMasking,
    TextVocabInfo,
    count_tokens,
)
from fourm_registry import MaskingDefaults, ModalitySet, ModalitySpec

SER = "fourm_core.masking:Masker"  # any importable attribute: the masker never loads the serializer
EOS, PAD, S0 = 3, 0, 4


def _specs(caption_len: int = 24, with_emb: bool = True) -> ModalitySet:
    specs = [
        ModalitySpec(name="rgb", kind="pixels", grid=(4, 4), patch_size=4, channels=3, aliases=("rgb@224",)),
        ModalitySpec(name="tok_rgb", kind="image", grid=(4, 4), vocab_size=64),
        ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=32, aliases=("tok_depth@224",)),
        ModalitySpec(name="glob", kind="vector", num_tokens=4, vocab_size=16),
        ModalitySpec(name="caption", kind="sequence", max_length=caption_len, vocab_size=1000, serializer=SER),
        ModalitySpec(name="det", kind="sequence", max_length=caption_len, vocab_size=1000, serializer=SER),
    ]
    if with_emb:
        specs.append(ModalitySpec(name="t5", kind="embedding_sequence", max_length=6, embed_dim=5))
    return ModalitySet(specs)


def _seq_batch(bsz: int, max_len: int, gen: torch.Generator, min_len: int = 0) -> torch.Tensor:
    out = torch.zeros(bsz, max_len, dtype=torch.long)
    for b in range(bsz):
        n = int(torch.randint(min_len, max_len, (1,), generator=gen))  # tokens before EOS
        out[b, :n] = torch.randint(204, 1000, (n,), generator=gen)
        out[b, n] = EOS
    return out


def _batch(ms: ModalitySet, bsz: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b: dict[str, torch.Tensor] = {}
    for s in ms.specs:
        if s.kind == "pixels":
            b[s.name] = torch.randn(bsz, s.channels, *s.image_size, generator=g)
        elif s.kind in ("image", "vector"):
            b[s.name] = torch.randint(0, s.vocab_size, (bsz, s.num_tokens), generator=g)
        elif s.kind == "sequence":
            b[s.name] = _seq_batch(bsz, s.max_length, g)
        else:
            t = torch.randn(bsz, s.max_length, s.embed_dim, generator=g)
            for i in range(bsz):
                t[i, int(torch.randint(1, s.max_length + 1, (1,), generator=g)):] = 0
            b[s.name] = t
    return b


def _reconstruct(tensor: torch.Tensor, input_mask: torch.Tensor, target_mask: torch.Tensor) -> list[int]:
    """Rebuild the original token list (up to and including EOS) from a sequence's input and full target."""
    inp = tensor[~input_mask].tolist()
    tgt = tensor[~target_mask].tolist()
    spans: dict[int, list[int]] = {}
    cur = None
    for t in tgt:
        if S0 <= t < S0 + 200:
            cur = t
            spans[cur] = []
        else:
            spans[cur].append(t)
    out: list[int] = []
    for t in inp:
        out.extend(spans[t] if S0 <= t < S0 + 200 else [t])
    if not inp:  # everything masked: one span
        out = spans.get(S0 + 1, [])
    return out


def _original(seq: torch.Tensor) -> list[int]:
    return seq[seq != PAD].tolist()


# ------------------------------------------------------------------------------------------------
# property tests
# ------------------------------------------------------------------------------------------------

alphas = st.sampled_from([0.01, 0.1, 0.5, 1.0, 10.0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(0, 60), n_tg=st.integers(0, 60), a_in=alphas, a_tg=alphas,
       bsz=st.integers(1, 6))
def test_budgets_disjoint_and_exact(seed, n_in, n_tg, a_in, a_tg, bsz):
    ms = _specs()
    cfg = MaskingConfig.from_dict({"input_tokens": n_in, "target_tokens": n_tg,
                                   "mixture": [{"input_alphas": a_in, "target_alphas": a_tg}]})
    masker = Masker(ms, cfg)
    batch = _batch(ms, bsz, seed)
    out = masker(batch, generator=torch.Generator().manual_seed(seed))
    assert set(out) == set(batch)
    n_input = sum((~v["input_mask"]).sum(1) for v in out.values())
    n_target = sum((~v["target_mask"]).sum(1) for v in out.values())
    assert (n_input <= n_in).all() and (n_target <= n_tg).all()
    # image-like modalities alone hold 16+16+16+4 = 52 input tokens: when the budget fits, it is used fully
    if n_in <= 52:
        assert (n_input == n_in).all(), (n_input, n_in)
    for name in ("rgb", "tok_rgb", "depth", "glob"):
        v = out[name]
        assert not ((~v["input_mask"]) & (~v["target_mask"])).any(), name
        # decoder attention value: number of targets at the first target slot
        nt = (~v["target_mask"]).sum(1)
        assert torch.equal(v["decoder_attention_mask"].sum(1), nt.int())
        first = torch.argmax((~v["target_mask"]).int(), 1)
        has = nt > 0
        assert torch.equal(v["decoder_attention_mask"][has, first[has]], nt[has].int())
    assert not (~out["rgb"]["target_mask"]).any()  # pixels are never targets
    assert not (~out["t5"]["target_mask"]).any()
    # the model's call lengths bound what a sample uses
    assert int(n_input.max()) <= masker.num_encoder_tokens
    dec_slots = sum(((~v["target_mask"]).sum(1) - (1 if masker.modalities[k].kind == "sequence" else 0)).clamp_min(0)
                    for k, v in out.items())
    assert int(dec_slots.max()) <= masker.num_decoder_tokens


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(0, 30), keep=st.sampled_from(["random", "all", "binary"]),
       chunked=st.booleans())
def test_spans_round_trip(seed, n_in, keep, chunked):
    ms = _specs(with_emb=False)
    mods = {"caption": {"keep": keep}}
    if chunked:
        mods["det"] = {"span": "chunked", "chunk_start_tokens": ["box"]}
    vocab = {"box": 500}
    cfg = MaskingConfig.from_dict({"input_tokens": n_in, "target_tokens": None, "modalities": mods,
                                   "mixture": [{"input_alphas": 1.0, "target_alphas": 1.0}]})
    masker = Masker(ms, cfg, text=TextVocabInfo(token_to_id=vocab))
    batch = _batch(ms, 5, seed)
    if chunked:  # chunks of 3 tokens starting with the "box" token
        det = torch.zeros_like(batch["det"])
        for b in range(5):
            k = (b * 2) % 7
            toks = torch.tensor([[500, 300 + i, 400 + i] for i in range(k)]).flatten()
            det[b, : len(toks)] = toks
            det[b, len(toks)] = EOS
        batch["det"] = det
    out = masker(batch, generator=torch.Generator().manual_seed(seed))
    for name in ("caption", "det"):
        v = out[name]
        for b in range(5):
            rec = _reconstruct(v["tensor"][b], v["input_mask"][b], v["target_mask"][b])
            orig = _original(batch[name][b])
            n_inp = int((~v["input_mask"][b]).sum())
            if n_inp == 0 and (~v["target_mask"][b]).sum() == 0:
                continue  # modality unused by this sample
            assert rec == orig, (name, b, rec, orig)
            # the target starts at the modality's input budget, after the input
            tpos = (~v["target_mask"][b]).nonzero().flatten()
            ipos = (~v["input_mask"][b]).nonzero().flatten()
            if len(tpos) and len(ipos):
                assert int(tpos[0]) >= int(ipos[-1]) + 1
            assert torch.equal(v["decoder_attention_mask"][b].bool(), ~v["target_mask"][b])
            if keep == "all" and name == "caption" and n_inp == len(orig):
                assert v["tensor"][b][:n_inp].tolist() == orig
        if chunked and name == "det":
            # every sentinel in the input replaces whole boxes: the token after a sentinel starts a chunk or is EOS
            for b in range(5):
                inp = v["tensor"][b][~v["input_mask"][b]].tolist()
                for i, t in enumerate(inp[:-1]):
                    if S0 <= t < S0 + 200:
                        assert inp[i + 1] in (500, EOS) or S0 <= inp[i + 1] < S0 + 200
                        assert i == 0 or inp[i - 1] in (EOS,) or inp[i - 1] >= 400


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), mx=st.integers(0, 8), mn=st.integers(0, 3))
def test_min_max_respected(seed, n, mx, mn):
    ms = _specs(with_emb=False)
    cfg = MaskingConfig.from_dict({"input_tokens": max(n, 2 * mn), "target_tokens": max(n, 2 * mn),
                                   "modalities": {"depth": {"max_tokens": mx}, "tok_rgb": {"min_tokens": mn}},
                                   "mixture": [{"input_alphas": 0.5, "target_alphas": 0.5}]})
    out = Masker(ms, cfg)(_batch(ms, 4, seed), generator=torch.Generator().manual_seed(seed))
    assert ((~out["depth"]["input_mask"]).sum(1) <= mx).all()
    assert ((~out["depth"]["target_mask"]).sum(1) <= mx).all()
    assert ((~out["tok_rgb"]["input_mask"]).sum(1) >= mn).all()
    # a target minimum holds as far as the tokens the input left allow (input and target never overlap)
    room = 16 - (~out["tok_rgb"]["input_mask"]).sum(1)
    assert ((~out["tok_rgb"]["target_mask"]).sum(1) >= torch.clamp(room, max=mn)).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), pattern=st.lists(st.booleans(), min_size=4, max_size=4))
def test_absent_modalities_never_used(seed, pattern):
    ms = _specs()
    masker = Masker(ms, MaskingConfig(input_tokens=(10, 40), target_tokens=(10, 40)))
    batch = _batch(ms, 4, seed)
    present = {"depth": torch.tensor(pattern), "caption": torch.tensor(pattern[::-1])}
    out = masker(batch, present=present, generator=torch.Generator().manual_seed(seed))
    for name, pres in present.items():
        v = out[name]
        absent = ~pres
        assert v["input_mask"][absent].all() and v["target_mask"][absent].all()
        assert (v["decoder_attention_mask"][absent] == 0).all()


# ------------------------------------------------------------------------------------------------
# unit tests
# ------------------------------------------------------------------------------------------------


def test_reference_layout_of_a_sequence():
    ms = _specs(caption_len=8, with_emb=False)
    masker = Masker(ms.subset(["caption"]), MaskingConfig(input_tokens=0, target_tokens=20))
    seq = torch.tensor([[300, 301, 302, EOS, 0, 0, 0, 0]])
    v = masker({"caption": seq}, generator=torch.Generator().manual_seed(0))["caption"]
    assert v["tensor"].shape == (1, 18) and v["tensor"].dtype == torch.long
    # no input budget: everything is one span; target [S_1] tokens [S_2] from index 0
    assert v["tensor"][0, :6].tolist() == [S0 + 1, 300, 301, 302, EOS, S0 + 2]
    assert v["input_mask"].all()
    assert (~v["target_mask"][0]).nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]
    assert v["decoder_attention_mask"].dtype == torch.int32


def test_target_truncation_starts_at_a_sentinel():
    ms = _specs(caption_len=30, with_emb=False).subset(["caption"])
    seq = torch.zeros(64, 30, dtype=torch.long)
    seq[:, :20] = torch.arange(300, 320)
    seq[:, 20] = EOS
    cfg = MaskingConfig.from_dict({"input_tokens": 10, "target_tokens": 5})
    v = Masker(ms, cfg)({"caption": seq}, generator=torch.Generator().manual_seed(1))["caption"]
    for b in range(64):
        tgt = v["tensor"][b][~v["target_mask"][b]].tolist()
        assert len(tgt) <= 5
        if tgt:
            assert S0 < tgt[0] < S0 + 200  # always begins with a sentinel


def test_transfer_masking():
    ms = _specs()
    cfg = MaskingConfig.for_transfer(inputs=["rgb@224", "caption"], targets=["depth", "det"])
    masker = Masker(ms, cfg)
    assert masker.num_encoder_tokens == 16 + 24 and masker.num_decoder_tokens == 16 + 25
    batch = _batch(ms, 3)
    present = {"caption": torch.tensor([True, True, False])}
    out = masker(batch, present=present)
    assert not out["rgb"]["input_mask"].any() and out["rgb"]["target_mask"].all()
    assert out["depth"]["input_mask"].all() and not out["depth"]["target_mask"].any()
    assert out["depth"]["decoder_attention_mask"][:, 0].tolist() == [16, 16, 16]
    for name in ("tok_rgb", "glob", "t5"):
        assert out[name]["input_mask"].all() and out[name]["target_mask"].all()
    cap = out["caption"]
    for b in range(2):
        orig = _original(batch["caption"][b])
        assert cap["tensor"][b][~cap["input_mask"][b]].tolist() == orig
    assert cap["input_mask"][2].all()
    det = out["det"]
    for b in range(3):
        orig = _original(batch["det"][b])
        assert det["tensor"][b][24:24 + len(orig) + 2].tolist() == [S0 + 1, *orig, S0 + 2]
        assert (~det["target_mask"][b]).nonzero().flatten().tolist() == list(range(24, 24 + len(orig) + 2))
    assert count_tokens(ms, cfg) == (40, 41)


def test_full_input_keep_scheme_and_rgb2all():
    ms = _specs(with_emb=False)
    cfg = MaskingConfig.from_dict({
        "input_tokens": 8, "target_tokens": 16,
        "mixture": [{"name": "rgb2all", "input_alphas": {"*": 0.0, "rgb": 1000.0}, "target_alphas": 0.5},
                    {"name": "caption-in", "input_alphas": 0.5, "target_alphas": 0.5, "full_input": ["caption"],
                     "keep": {"det": "all"}}]})
    masker = Masker(ms, cfg)
    assert masker.num_encoder_tokens == 8 + 24
    out = masker(_batch(ms, 32, 3), generator=torch.Generator().manual_seed(3))
    n_rgb = (~out["rgb"]["input_mask"]).sum(1)
    cap_in = (~out["caption"]["input_mask"]).sum(1)
    cap_tg = (~out["caption"]["target_mask"]).sum(1)
    rgb2all = n_rgb == 8
    assert rgb2all.any() and (~rgb2all).any()
    # rgb2all: only rgb is input; caption-in: the whole caption is input and never a target
    for name in ("tok_rgb", "depth", "glob", "caption", "det"):
        assert out[name]["input_mask"][rgb2all].all(), name
    assert (cap_tg[~rgb2all] == 0).all() and (cap_in[~rgb2all] > 0).all()


def test_same_generator_seed_same_masks():
    ms = _specs()
    masker = Masker(ms, MaskingConfig(input_tokens=(4, 30), target_tokens=(4, 30)))
    batch = _batch(ms, 4)
    a = masker(batch, generator=torch.Generator().manual_seed(7))
    b = masker(batch, generator=torch.Generator().manual_seed(7))
    c = masker(batch, generator=torch.Generator().manual_seed(8))
    for k in a:
        for f in a[k]:
            assert torch.equal(a[k][f], b[k][f])
    assert any(not torch.equal(a[k]["input_mask"], c[k]["input_mask"]) for k in a)


def test_dirichlet_shares_follow_alphas():
    ms = _specs(with_emb=False).subset(["tok_rgb", "depth"])
    cfg = MaskingConfig.from_dict({"input_tokens": 16, "target_tokens": 0,
                                   "mixture": [{"input_alphas": {"tok_rgb": 3.0, "depth": 1.0}}]})
    out = Masker(ms, cfg)(_batch(ms, 2000), generator=torch.Generator().manual_seed(0))
    share = (~out["tok_rgb"]["input_mask"]).sum(1).float().mean() / 16
    assert abs(float(share) - 0.75) < 0.03


def test_reference_alphas_with_aliases(tmp_path):
    ms = _specs()
    ref = {"sampling_weights": [1.0, 1.0], "alphas_mixture": {
        "rgb@224": {"input_alphas": [1000.0, 0.5], "target_alphas": [0.0, 0.0]},
        "tok_depth@224": {"input_alphas": [0.0, 0.5], "target_alphas": [0.5, 0.5]},
        "caption": {"input_alphas": [0.0, 0.5], "target_alphas": [0.5, 0.5], "keep": ["random", "binary"]}}}
    cfg = MaskingConfig.from_reference(ref, input_tokens=8, target_tokens=8)
    masker = Masker(ms, cfg)
    out = masker(_batch(ms, 16), generator=torch.Generator().manual_seed(0))
    for name in ("tok_rgb", "glob", "det", "t5"):  # alpha 0 in both components
        assert out[name]["input_mask"].all() and out[name]["target_mask"].all()
    # round trip through YAML
    import yaml

    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(cfg.to_dict()))
    assert MaskingConfig.from_yaml(p) == cfg


def test_config_from_yaml_and_errors(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(textwrap.dedent("""
        input_tokens: [16, 32]
        target_tokens: 32
        mixture:
          - {name: a, input_alphas: 0.5, target_alphas: {"*": 0.5, rgb: 0}}
        modalities:
          caption: {keep: binary}
        transfer: null
    """))
    cfg = MaskingConfig.from_yaml(p)
    assert cfg.input_tokens == (16, 32) and cfg.modalities["caption"].keep == "binary"
    with pytest.raises(MaskingError, match=r"unknown key\(s\) 'input_token'.*valid keys: input_tokens.*transfer"):
        MaskingConfig.from_dict({"input_token": 3})
    with pytest.raises(MaskingError, match="modalities.caption.*unknown key.*'kep'.*keep"):
        MaskingConfig.from_dict({"modalities": {"caption": {"kep": "all"}}})
    with pytest.raises(MaskingError, match="keep scheme 'sometimes'"):
        MaskingConfig.from_dict({"modalities": {"caption": {"keep": "sometimes"}}})
    with pytest.raises(MaskingError, match="alpha of 'rgb' must be finite and >= 0"):
        MaskingConfig.from_dict({"mixture": [{"input_alphas": {"rgb": -1}}]})
    with pytest.raises(MaskingError, match=r"range \[5, 2\]"):
        MaskingConfig.from_dict({"input_tokens": [5, 2]})
    with pytest.raises(MaskingError, match="does not exist"):
        MaskingConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(MaskingError, match="both input and target"):
        MaskingConfig.for_transfer(inputs=["rgb"], targets=["rgb"])
    ms = _specs()
    with pytest.raises(MaskingError, match="unknown modality 'dept'; the masker's modalities are .*depth"):
        Masker(ms, MaskingConfig.from_dict({"mixture": [{"input_alphas": {"dept": 1.0}}]}))
    Masker(ms, MaskingConfig.from_dict({"mixture": [{"input_alphas": {"dept": 1.0}}],
                                        "allow_unknown_modalities": True}))
    with pytest.raises(MaskingError, match="'rgb' .*cannot be a decoder target"):
        Masker(ms, MaskingConfig.for_transfer(inputs=["depth"], targets=["rgb"]))
    with pytest.raises(MaskingError, match="min_tokens sum to 40"):
        Masker(ms, MaskingConfig.from_dict({"input_tokens": 30, "modalities": {"depth": {"min_tokens": 40}}}))
    with pytest.raises(MaskingError, match="chunk start token 'box' is not in the text vocabulary"):
        Masker(ms, MaskingConfig.from_dict({"modalities": {"det": {"span": "chunked", "chunk_start_tokens": ["box"]}}}))


def test_batch_errors_name_the_modality():
    ms = _specs()
    masker = Masker(ms, MaskingConfig())
    good = _batch(ms, 2)
    with pytest.raises(MaskingError, match=r"'depth' \(image\) must be int64 \(B, 16\), got int64 \(2, 15\)"):
        masker({**good, "depth": good["depth"][:, :15]})
    with pytest.raises(MaskingError, match="unknown modality 'normals'"):
        masker({**good, "normals": good["depth"]})
    with pytest.raises(MaskingError, match="'depth' has token ids in \\[0, 99\\] outside the vocabulary \\[0, 32\\)"):
        bad = good["depth"].clone()
        bad[0, 0] = 99
        masker({**good, "depth": bad})
    bad = good["caption"].clone()
    bad[1, :] = 0
    bad[1, 5] = 400
    with pytest.raises(MaskingError, match="'caption', sample 1: \\[PAD\\].*before a token"):
        masker({**good, "caption": bad})
    with pytest.raises(MaskingError, match="batch size 3, others have 2"):
        masker({**good, "glob": torch.zeros(3, 4, dtype=torch.long)})
    with pytest.raises(MaskingError, match=r"present\['depth'\] must be a BoolTensor of shape \(2,\)"):
        masker(good, present={"depth": torch.ones(3, dtype=torch.bool)})


def test_text_vocab_info_checks_layout():
    class Tok:
        def __init__(self, vocab):
            self.v = vocab

        def get_vocab(self):
            return self.v

    vocab = {"[PAD]": 0, "[UNK]": 1, "[SOS]": 2, "[EOS]": 3, **{f"[S_{i}]": 4 + i for i in range(200)}, "v0=1": 204}
    info = TextVocabInfo.from_tokenizer(Tok(vocab))
    assert info.vocab_size == 205 and info.sentinel_id(1) == 5
    bad = dict(vocab, **{"[EOS]": 7})
    with pytest.raises(MaskingError, match=r"\[EOS\] has id 7.*needs 3"):
        TextVocabInfo.from_tokenizer(Tok(bad))


def test_embedding_sequence_and_long_sequences():
    ms = _specs()
    out = Masker(ms, MaskingConfig(input_tokens=60, target_tokens=10))(_batch(ms, 6))
    v = out["t5"]
    assert v["tensor"].shape == (6, 6, 5)
    assert (v["tensor"][v["input_mask"]] == 0).all()  # masked rows are zero
    with pytest.raises(MaskingError, match="max_length 500 may need 251 sentinels"):
        Masker(ModalitySet([ModalitySpec(name="long", kind="sequence", max_length=500, vocab_size=10,
                                         serializer=SER)]), MaskingConfig())


def test_spec_masking_defaults_are_used():
    spec = ModalitySpec(name="depth", kind="image", grid=(4, 4), vocab_size=32,
                        masking=MaskingDefaults(min_tokens=0, max_tokens=3))
    ms = ModalitySet([spec, ModalitySpec(name="tok_rgb", kind="image", grid=(4, 4), vocab_size=64)])
    out = Masker(ms, MaskingConfig(input_tokens=20, target_tokens=20))(_batch(ms, 16))
    assert ((~out["depth"]["input_mask"]).sum(1) <= 3).all()
    # what depth cannot hold goes to tok_rgb: the input budget is still used fully
    total = (~out["depth"]["input_mask"]).sum(1) + (~out["tok_rgb"]["input_mask"]).sum(1)
    assert (total == 19).all()  # 3 (depth's max) + 16 (all of tok_rgb)
    ms2 = ModalitySet([spec])
    cfg = MaskingConfig(input_tokens=2, target_tokens=2, modalities={"depth": ModalityMasking(max_tokens=1)})
    out2 = Masker(ms2, cfg)(_batch(ms2, 4))
    assert ((~out2["depth"]["input_mask"]).sum(1) == 1).all()
