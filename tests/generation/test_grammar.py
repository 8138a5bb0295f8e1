"""Grammar-constrained decoding (issue 18): the serializers' text grammars accept the reference 4M strings and
reject broken ones; on the shared release set's tiny random model every generated det / palette / metadata /
pose / SAM text parses with the grammar and almost none does without it; grammar off leaves the ids as they
were; prefixes, length budgets, the int8 proposal path and bad settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from fourm_core.generation import GenerationError, Sampler, TargetConfig
from fourm_core.generation.grammar import (
    Grammar,
    alt,
    automaton_for,
    compile_grammar,
    permutation,
    repeat,
    seq,
    value,
    words,
)

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
_TEXT = RELEASE / "text"
needs_text = pytest.mark.requires(
    "conformance", available=(_TEXT / "serialization.json").is_file(),
    reason=f"the shared release-format set {RELEASE} (text/) is not present; put shared/ beside the checkout or "
           f"set FOURM_RELEASE_DIR")
needs_fm = pytest.mark.requires(
    "conformance", available=(RELEASE / "fm").is_dir() and (_TEXT / "serialization.json").is_file(),
    reason=f"the shared release-format set {RELEASE} (fm/, text/) is not present; put shared/ beside the checkout "
           f"or set FOURM_RELEASE_DIR")
STRUCTURED = ("det", "color_palette", "metadata", "human_pose", "smpl_pose", "sam_instance")
#: the release set's 4M names → our plugins
REF_NAMES = {"det": "det", "color_palette": "color_palette", "metadata": "metadata", "human_poses": "smpl_pose",
             "sam_instance": "sam_instance"}


def _ser(name, **kw):
    from fourm_registry import get_modalities

    return get_modalities()[name].serializer.build(**kw)


@pytest.fixture(scope="module")
def our_tok():
    from fourm_core.tokenizers import TextTokenizer
    from fourm_registry import get_modalities

    corpus = ["a dog on a red sofa", "two people by a traffic light", "hello world of tokens"] * 5
    return TextTokenizer.build_for(get_modalities(), corpus, vocab_size=4204 + 95 + 200)


@pytest.fixture(scope="module")
def ref_tok():
    from fourm_core.tokenizers import TextTokenizer

    return TextTokenizer.load(_TEXT / "text_tokenizer_4m_wordpiece_30k.json")


def _ids(tok, text):
    return tok.encode_ids([text])[0]


# -- the declared grammars ----------------------------------------------------------------------------------
@needs_text
def test_grammars_accept_every_reference_string(ref_tok):
    """Catches a grammar stricter than 4M's text: every reference example's ids (and the cut ids its masking
    writes) must be a text / the beginning of a text of its modality's grammar."""
    ref = json.loads((_TEXT / "serialization.json").read_text())["examples"]
    checked = 0
    for ref_name, name in REF_NAMES.items():
        for i, e in enumerate(ref[ref_name]):
            kw = {"point_mode": "grid", "num_points": 49} if name == "sam_instance" else {}
            a = automaton_for(_ser(name, **kw), ref_tok, modality=name)
            text = e.get("string", e.get("joined_string", " ".join(e.get("chunks", []))))
            ids = e["ids"] if "ids" in e else _ids(ref_tok, text)
            assert a.accepts(ids), f"{ref_name}[{i}]"
            cut = [t for t in e.get("masking_ids", ids) if t != 3]
            assert a.accepts(cut, complete=False), f"{ref_name}[{i}] masking ids"
            checked += 1
    assert checked >= 12


BROKEN = {
    "det": ["v0=1 v1=2 v2=3 person", "v0=1 v1=2 v2=3 v3=4", "v0=1 v1=2 v2=3 v3=4 sofa", "person"],
    "color_palette": ["v1=8 " + " ".join(["v0=1"] * 24), "v1=1 v0=1 v0=2", "v1=1 v0=1 v0=2 v0=256", ""],
    "metadata": ["v1=5 v0=2 v1=5 v0=3", "v1=19 v0=2", "v1=23 v0=0", "v1=5", ""],
    "human_pose": ["human v0=1 v1=1 v2=5 v3=5 " + " ".join(["none"] * 16), "none none", ""],
    "smpl_pose": ["human v0=1 v1=1 v2=5 v3=5 pose " + " ".join(["v0=1"] * 8) + " pose " + " ".join(["v0=1"] * 8),
                  "human v0=1 v1=1 v2=5 v3=5"],
    "sam_instance": ["point v0=300 v1=5 none", "point v0=3 v1=5", "point v0=3 v1=5 polygon v0=1 v1=1 v2=9 v3=9 v0=1", ""],
}
GOOD = {
    "det": {"boxes": [[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0]], "classes": ["traffic_light", "person"], "scores": [0.9, 0.8]},
    "color_palette": {"colors": [[255, 0, 7], [1, 2, 3]]},
    "metadata": {"brightness": 112.3, "n_humans": 2, "watermark_score": 0.7, "original_width": 640},
    "human_pose": {"format": "coco17", "persons": [{"box": [0.1, 0.1, 0.5, 0.9], "score": 0.9,
                                                      "keypoints": [[0.2, 0.3, 2]] * 10 + [[0, 0, 0]] * 7}]},
    "smpl_pose": {"humans": [{"box": [0.1, 0.1, 0.5, 0.9], "pose": [1, 600, 3, 4, 5, 6, 7, 1023],
                              "global": [0.1] * 9, "camera": [1.0, 0.2, 0.3], "shape": [0.0] * 10}]},
    "sam_instance": {"points": [{"xy": [0.5, 0.25], "instances": []},
                                {"xy": [0.1, 0.2], "instances": [{"box": [0.0, 0.1, 0.5, 0.6], "tokens": list(range(0, 1024, 64))}]}]},
}


@pytest.mark.parametrize("name", STRUCTURED)
def test_grammar_accepts_to_text_and_rejects_broken_texts(name, our_tok):
    """Catches a grammar that is too strict for what the serializer writes, or too loose: broken texts (missing
    or incomplete parts, values out of range, repeated keys / groups) are rejected."""
    ser = _ser(name)
    a = automaton_for(ser, our_tok, modality=name)
    assert a.accepts(_ids(our_tok, ser.to_text(GOOD[name])))
    assert a.accepts(_ids(our_tok, ser.to_text(GOOD[name] if name != "human_pose" else {"persons": []})))
    for text in BROKEN[name]:
        assert not a.accepts(_ids(our_tok, text)), text


def test_combinators_permutation_once_phrases_and_caching(our_tok):
    """Catches broken combinators: permutation (each part once, any order), once= (a key twice), phrases of
    several word pieces, bounded repeats; a serializer's automaton is compiled once per tokenizer."""
    g = Grammar(repeat(seq(alt(value(1, 0, 2), words("hello world")), permutation(value(0, 0, 1), words("human"))), 1, 2),
                once=value(1, 0, 2))
    a = compile_grammar(g, our_tok, modality="toy")
    ok = ["v1=0 v0=1 human", "v1=1 human v0=0 hello world v0=1 human", "hello world human v0=0"]
    bad = ["v1=0 v0=1", "v1=0 v0=1 human v0=1", "v1=0 v0=1 human v1=0 human v0=0", "v1=0 human v0=2",
           "hello human v0=0", "v1=0 v0=1 human " * 3]
    assert len(_ids(our_tok, "hello world")) > 1  # a phrase of several tokens
    assert all(a.accepts(_ids(our_tok, t)) for t in ok)
    assert not any(a.accepts(_ids(our_tok, t)) for t in bad)
    ser = _ser("det")
    assert automaton_for(ser, our_tok) is automaton_for(ser, our_tok)
    assert automaton_for(_ser("caption"), our_tok) is None  # no grammar declared: nothing to pay
    with pytest.raises(GenerationError, match="toy"):
        compile_grammar(Grammar(words("[EOS]")), our_tok, modality="toy")


# -- decoding on the release set's tiny model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def fm():
    from safetensors.torch import load_file

    from fourm_core.model import FourM

    model = FourM.from_pretrained(RELEASE / "fm").eval()
    io = load_file(str(RELEASE / "fm_io.safetensors"))
    names = model.ml4m_names
    return model, {names["rgb@224"]: io["input.rgb@224.tensor"][0:1].repeat(16, 1, 1, 1)}, names["caption"]


def _parse_rate(ser, tok, tokens):
    ok = 0
    for text in tok.decode(tokens):
        try:
            ser.from_text(text)
            ok += 1
        except ValueError:
            pass
    return ok / tokens.shape[0]


@needs_fm
@pytest.mark.parametrize("name", STRUCTURED)
def test_generated_texts_always_parse_with_the_grammar(name, fm, ref_tok):
    """Catches a mask that lets a forbidden token through (any path, any row), a length budget that cuts an
    item, or an end allowed where the text cannot end: the random caption head writes each modality's text
    under its grammar (temperature 1, 32 rows) and every one parses and is a whole text; without the grammar
    almost none does."""
    model, inputs, cap = fm
    ser = _ser(name)
    a = automaton_for(ser, ref_tok, modality=name)
    sampler = Sampler(model)
    rates = {}
    for g in (a, False):
        got = [sampler.generate(inputs, [TargetConfig(modality=cap, temperature=1.0, max_new_tokens=30, grammar=g)],
                                seed=seed).tokens[cap] for seed in (0, 1)]
        rates["on" if g is a else "off"] = sum(_parse_rate(ser, ref_tok, t) for t in got) / len(got)
        if g is a:
            for t in got:
                for row in t.tolist():
                    assert a.accepts(row[: row.index(3)]), ref_tok.decode_ids(row)
    print(f"{name}: parse rate with grammar {rates['on']:.2f}, without {rates['off']:.2f}")
    assert rates["on"] == 1.0 and rates["off"] <= 0.25


@needs_fm
def test_grammar_off_keeps_the_ids_and_greedy_paths_agree(fm, ref_tok):
    """Catches a grammar that changes unconstrained decoding (grammar=False / unset give the same ids, same
    seed) and an int8 proposal path that ignores the mask (greedy with and without the proposals agree)."""
    model, inputs, cap = fm
    a = automaton_for(_ser("det"), ref_tok, modality="det")
    def run(g):
        cfg = TargetConfig(modality=cap, temperature=1.0, max_new_tokens=20, grammar=g)
        return Sampler(model).generate(inputs, [cfg], seed=3).tokens[cap]

    assert torch.equal(run(None), run(False))
    greedy = [Sampler(model, int8_proposals=p).generate(
        inputs, [TargetConfig(modality=cap, temperature=0.0, max_new_tokens=25, grammar=a)], seed=0).tokens[cap]
        for p in (True, False)]
    assert torch.equal(greedy[0], greedy[1])
    assert all(a.accepts(r[: r.index(3)]) for r in greedy[0].tolist())


@needs_fm
def test_prefix_is_continued_under_the_grammar_and_bad_prefixes_fail(fm, ref_tok):
    """Catches a prefix not fed to the automaton (the continuation would restart the grammar) and a broken
    prefix accepted silently."""
    model, inputs, cap = fm
    ser = _ser("color_palette")
    a = automaton_for(ser, ref_tok, modality="color_palette")
    given = ref_tok.encode(["v1=2 v0=255 v0=0"] * 16, 23)
    res = Sampler(model).generate(inputs, [TargetConfig(modality=cap, temperature=1.0, grammar=a)], seed=0,
                                  given={cap: given})
    texts = ref_tok.decode(res.tokens[cap])
    assert all(t.startswith("v1=2 v0=255 v0=0 ") and len(ser.from_text(t)["colors"]) == 2 for t in texts)
    with pytest.raises(GenerationError, match="breaks the modality's grammar"):
        Sampler(model).generate(inputs, [TargetConfig(modality=cap, grammar=a)], seed=0,
                                given={cap: ref_tok.encode(["v0=2"] * 16, 23)})


@needs_fm
def test_bad_grammar_settings_raise(fm, ref_tok):
    model, inputs, cap = fm
    a = automaton_for(_ser("color_palette"), ref_tok, modality="color_palette")
    with pytest.raises(GenerationError, match="too few"):
        Sampler(model).generate(inputs, [TargetConfig(modality=cap, max_new_tokens=3, grammar=a)], seed=0)
    with pytest.raises(GenerationError, match="sequences only"):
        Sampler(model).generate(inputs, [TargetConfig(modality="depth", grammar=a)], seed=0)
    with pytest.raises(GenerationError, match="TokenAutomaton"):
        Sampler(model).generate(inputs, [TargetConfig(modality=cap, grammar="det")], seed=0)
    with pytest.raises(GenerationError, match="grammar=True"):
        Sampler(model).generate(inputs, [TargetConfig(modality=cap, grammar=True)], seed=0)


def test_codec_grammar_fills_unset_and_true_and_keeps_false(our_tok):
    """Catches the codec wiring: an unset or True grammar becomes the codec's compiled automaton (the one
    automaton_for caches), False stays off, and True on a modality without a grammar raises."""
    from fourm_core.generation.grammar import TokenAutomaton, codec_automaton, with_codec_grammar
    from fourm_core.tokenizers.codec import sequence_codec
    from fourm_registry import get_modalities

    mods = get_modalities()
    det, cap = sequence_codec(mods["det"], our_tok), sequence_codec(mods["caption"], our_tok)
    a = codec_automaton(det)
    assert isinstance(a, TokenAutomaton) and codec_automaton(det) is a and codec_automaton(cap) is None
    assert with_codec_grammar(TargetConfig(modality="det"), det).grammar is a
    assert with_codec_grammar(TargetConfig(modality="det", grammar=True), det).grammar is a
    assert with_codec_grammar(TargetConfig(modality="det", grammar=False), det).grammar is False
    assert with_codec_grammar(TargetConfig(modality="caption"), cap).grammar is None
    with pytest.raises(GenerationError, match="declares no grammar"):
        with_codec_grammar(TargetConfig(modality="caption", grammar=True), cap)


@needs_fm
def test_anytoany_decodes_under_the_grammar_by_default_and_not_with_grammar_false():
    """AnyToAny gives a sequence target its codec's compiled grammar when the call leaves it unset, and
    grammar=False turns it off (the release set's tiny random model; its caption head constrained as a palette)."""
    from fourm_core.generation.grammar import codec_automaton
    from fourm_core.model import FourM
    from fourm_core.pipeline import AnyToAny
    from fourm_core.tokenizers import TextTokenizer
    from fourm_core.tokenizers.codec import sequence_codec
    from fourm_registry import get_modalities

    model = FourM.from_pretrained(RELEASE / "fm")
    text = TextTokenizer.load(_TEXT / "text_tokenizer_4m_wordpiece_30k.json")
    codec = sequence_codec(get_modalities()["color_palette"], text)
    api = AnyToAny(model, {"caption": codec})
    assert codec_automaton(codec) is not None
    cfg = api._targets(["caption"], {})[0]
    assert cfg.grammar is not None and cfg.grammar is not False
    off = api._targets(["caption"], {"grammar": False})[0]
    assert off.grammar is False
