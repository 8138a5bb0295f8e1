"""The shared text tokenizer built from every installed sequence plugin encodes each structured serializer's
output token for token (no ``[UNK]``, nothing split; a declared multi-word class such as ``traffic light`` is
one token), within the modality's ``max_length`` (metadata: cut there to whole chunks, as 4M-21), and decodes
back to the same raw. Worst-case raws measure each serializer's longest output."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fourm_registry import get_modalities

STRUCTURED = ("det", "human_pose", "color_palette", "metadata")


def _worst_cases() -> dict[str, list]:
    from fourm_det.classes import COCO_CLASS_TOKENS
    from fourm_metadata.components import KEYS

    rng = np.random.default_rng(0)
    n = 60  # more boxes than the serializer keeps (50)
    xy = rng.random((n, 2)) * 0.5
    det = {"boxes": np.concatenate([xy, xy + 0.3], 1).tolist(),
           "classes": [COCO_CLASS_TOKENS[i % len(COCO_CLASS_TOKENS)] for i in range(n)],
           "scores": rng.uniform(0.6, 1.0, n).tolist()}
    persons = [{"box": [0.1 * i, 0.05, 0.1 * i + 0.3, 0.95], "score": 0.9,
                "keypoints": [[0.1 * i + 0.01 * j, 0.05 * j + 0.05, 2] for j in range(17)]} for i in range(8)]
    pose = {"format": "coco17", "persons": persons}
    palette = {"colors": rng.integers(0, 256, (7, 3)).tolist()}
    metadata = {k: 3 for k in KEYS}
    return {"det": [det], "human_pose": [pose], "color_palette": [palette], "metadata": [metadata]}


@pytest.fixture(scope="module")
def shared_text():
    from fourm_core.tokenizers import TextTokenizer

    mods = get_modalities()
    missing = [m for m in (*STRUCTURED, "caption") if m not in mods]
    assert not missing, f"sequence plugins not installed: {missing} (pip install -r requirements-dev.txt)"
    corpus = ["an astronaut in a white suit poses with a flag", "a cat sleeping on a red sofa",
              "a cup of coffee on a table", "a rocket on a launch pad"] * 5
    specials = sum(len(s.special_tokens) for s in mods.specs if s.kind == "sequence")
    return TextTokenizer.build_for(mods, corpus, vocab_size=4204 + specials + 300)


def _expected_tokens(text: str, spec) -> list[str]:
    """The whitespace words of ``text``, the declared multi-word special tokens kept whole."""
    multi = sorted((t for t in spec.special_tokens if " " in t), key=len, reverse=True)
    if not multi:
        return text.split()
    pattern = re.compile(r"(?<!\S)(" + "|".join(re.escape(t) for t in multi) + r")(?!\S)")
    out = []
    for i, part in enumerate(pattern.split(text)):
        out += [part] if i % 2 else part.split()
    return out


@pytest.mark.parametrize("name", [n for n in STRUCTURED if n != "metadata"])
def test_structured_tokens_are_whole_and_fit(shared_text, name):
    from fourm_core.tokenizers import ModalityCodec

    spec = get_modalities()[name]
    ser = spec.serializer.build()
    codec = ModalityCodec(spec, spec.tokenizer.build(text_tokenizer=shared_text), serializer=ser)
    raws = _worst_cases()[name]
    for raw in raws:
        text = ser.to_text(raw)
        words = _expected_tokens(text, spec)
        ids = shared_text.encode_ids([text])[0]
        expected = [shared_text.token_to_id(w) for w in words]
        assert None not in expected, f"{name}: tokens missing from the vocabulary: " \
                                     f"{[w for w, i in zip(words, expected) if i is None]}"
        assert ids == expected, f"{name}: a structured token was split or mapped to [UNK]"
        assert shared_text.unk_id not in ids
        assert len(ids) + 1 <= spec.max_length, f"{name}: worst case {len(ids)} tokens + [EOS] > max_length {spec.max_length}"
        tokens = codec.encode([raw])
        back = codec.decode(tokens)[0]
        assert ser.to_text(back) == text, f"{name}: the text tokenizer changed the serialized text"


def test_metadata_longer_than_max_length_keeps_whole_chunks(shared_text):
    """All 23 keys give 46 tokens: the tokenizer keeps the first 40 (20 whole chunks, no [EOS]), as 4M-21's
    chunked masking does, and decoding gives those 20 keys."""
    from fourm_core.tokenizers import ModalityCodec

    spec = get_modalities()["metadata"]
    ser = spec.serializer.build()
    codec = ModalityCodec(spec, spec.tokenizer.build(text_tokenizer=shared_text), serializer=ser)
    raw = _worst_cases()["metadata"][0]
    words = ser.to_text(raw).split()
    assert [shared_text.token_to_id(w) for w in words] == shared_text.encode_ids([" ".join(words)])[0]
    tokens = codec.encode([raw])
    assert tokens.shape == (1, 40) and shared_text.eos_id not in tokens[0].tolist()
    assert codec.decode(tokens)[0] == ser.from_text(" ".join(words[:40]))


def test_worst_case_lengths(shared_text):
    """The worst cases measured here (see the plugins' READMEs): det 250, human_pose 234, color_palette 22
    tokens, each + [EOS] within max_length 256 / 263 / 23; metadata 46 (cut to 40)."""
    lengths = {}
    for name in STRUCTURED:
        spec = get_modalities()[name]
        ser = spec.serializer.build()
        lengths[name] = max(len(shared_text.encode_ids([ser.to_text(r)])[0]) for r in _worst_cases()[name])
    assert lengths == {"det": 250, "human_pose": 234, "color_palette": 22, "metadata": 46}


def test_captions_encode_without_unk_for_known_words(shared_text):
    from fourm_core.tokenizers import ModalityCodec

    spec = get_modalities()["caption"]
    ser = spec.serializer.build()
    codec = ModalityCodec(spec, spec.tokenizer.build(text_tokenizer=shared_text), serializer=ser)
    caption = "A cat sleeping on a red sofa"
    ids = shared_text.encode_ids([caption])[0]
    assert shared_text.unk_id not in ids
    assert codec.decode(codec.encode([caption]))[0] == caption.lower()


def test_undeclared_class_names_survive_the_word_pieces(shared_text):
    """An open-vocabulary detector's class that is no special token is split by WordPiece and parsed back as
    its words."""
    from fourm_core.tokenizers import ModalityCodec

    spec = get_modalities()["det"]
    ser = spec.serializer.build()
    codec = ModalityCodec(spec, spec.tokenizer.build(text_tokenizer=shared_text), serializer=ser)
    raw = {"boxes": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.4, 0.9]], "classes": ["red_sofa", "cat"], "scores": [0.9, 0.9]}
    back = codec.decode(codec.encode([raw]))[0]
    assert back["classes"] == ["red sofa", "cat"]
    assert ser.to_text(back) == ser.to_text(raw)


def test_det_text_cut_at_max_length_decodes(shared_text):
    """50 boxes with three-word undeclared classes do not fit 256 tokens: encoding keeps the first 256 ids (no
    [EOS], as 4M), decoding keeps the complete boxes."""
    from fourm_core.tokenizers import ModalityCodec

    spec = get_modalities()["det"]
    ser = spec.serializer.build()
    codec = ModalityCodec(spec, spec.tokenizer.build(text_tokenizer=shared_text), serializer=ser)
    boxes = [[0.01 * i, 0.01 * i, 0.5, 0.5] for i in range(50)]
    raw = {"boxes": boxes, "classes": ["red_sofa_cat"] * 50, "scores": [0.9] * 50}
    back = codec.decode(codec.encode([raw]))[0]
    assert 0 < len(back["boxes"]) < 50 and set(back["classes"]) == {"red sofa cat"}
    assert len(back["boxes"]) == spec.max_length // 7
