"""TextTokenizer: fixed special layout, encode/decode conventions, save/load, reference JSON format."""

from __future__ import annotations

import json

import pytest
import torch

from fourm_core.tokenizers import TextTokenizer, TextTokenizerError
from fourm_registry import ModalitySet, ModalitySpec

CORPUS = ["a dog runs on the grass", "two cats sleep on a red couch", "a person rides a horse near the sea"] * 20


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, special_tokens=["person", "traffic light", "[S_3]"], vocab_size=4400)


def test_fixed_layout(tok):
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[SOS]", "[EOS]")] == [0, 1, 2, 3]
    assert tok.sentinel_ids == list(range(4, 204))
    assert tok.token_to_id("v0=0") == 204 and tok.token_to_id("v0=999") == 1203
    assert tok.token_to_id("v3=999") == 4203
    assert tok.token_to_id("person") == 4204 and tok.token_to_id("traffic light") == 4205  # duplicate [S_3] dropped
    assert tok.vocab_size > 4206


def test_encode_eos_pad_truncation_and_whole_special_tokens(tok):
    ids = tok.encode(["a dog v0=12 v1=999 person [S_7]", "traffic light"], max_length=10)
    assert ids.dtype == torch.long and ids.shape == (2, 10)
    row = ids[0].tolist()
    assert [tok.id_to_token(i) for i in row[2:6]] == ["v0=12", "v1=999", "person", "[S_7]"]
    assert row[6] == 3 and row[7:] == [0, 0, 0]
    assert ids[1, :2].tolist() == [4205, 3]
    short = tok.encode(["a dog runs on the grass"], max_length=3)
    # ids + [EOS] cut to max_length, as 4M: a sequence that does not end there has no [EOS]
    assert short[0].tolist() == tok.encode_ids(["a dog runs on the grass"])[0][:3] and 3 not in short[0].tolist()
    exact = tok.encode(["a dog"], max_length=3)
    assert exact[0].tolist() == [*tok.encode_ids(["a dog"])[0], 3]


def test_decode_stops_at_eos_and_skips_pad(tok):
    ids = tok.encode(["a dog v0=12 person"], max_length=12)
    assert tok.decode(ids) == ["a dog v0=12 person"]
    extra = torch.tensor([[tok.token_to_id("a"), 0, tok.token_to_id("dog"), 3, tok.token_to_id("cats")]])
    assert tok.decode(extra) == ["a dog"]


def test_save_load_identical(tok, tmp_path):
    tok.save(tmp_path / "text" / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "text" / "tokenizer.json")
    texts = ["a person v2=5 [S_0] sleeps", "cats"]
    assert torch.equal(again.encode(texts, 16), tok.encode(texts, 16))
    assert again.vocab_size == tok.vocab_size and again.sentinel_ids == tok.sentinel_ids


def test_build_for_collects_plugin_specials():
    def spec(name, specials):
        return ModalitySpec(name=name, kind="sequence", vocab_size=30000, max_length=8,
                            serializer="json:dumps", special_tokens=specials)

    mods = ModalitySet([spec("det", ["person", "car"]), spec("palette", ["color=red"]),
                        ModalitySpec(name="depth", kind="image", vocab_size=8, grid=(2, 2))])
    t = TextTokenizer.build_for(mods, CORPUS, vocab_size=4400)
    assert [t.token_to_id(x) for x in ("person", "car", "color=red")] == [4204, 4205, 4206]


def _reference_json(path):
    """A small file in the reference's format (tokenizers JSON, WordPiece, [PAD] 0..[EOS] 3, [S_i], xmin= tokens)."""
    specials = ["[PAD]", "[UNK]", "[SOS]", "[EOS]"] + [f"[S_{i}]" for i in range(5)] + ["xmin=0", "xmin=1"]
    added = [{"id": i, "content": t, "single_word": i >= 4, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, t in enumerate(specials)]
    words = ["a", "dog", "cat", "on", "the", "##s", "d", "o", "g", "c", "t", "s", "e", "h", "n"]
    vocab = {t: i for i, t in enumerate(specials + words)}
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    path.write_text(json.dumps(doc))
    return vocab


def test_reference_format_loads(tmp_path):
    vocab = _reference_json(tmp_path / "ref.json")
    t = TextTokenizer.load(tmp_path / "ref.json")
    assert t.sentinel_ids == [4, 5, 6, 7, 8]
    ids = t.encode(["A dog on the cats xmin=1 [S_2]"], max_length=12)[0].tolist()
    assert ids[:8] == [vocab["a"], vocab["dog"], vocab["on"], vocab["the"], vocab["cat"], vocab["##s"], 10, 6]
    assert ids[8] == 3 and ids[9:] == [0, 0, 0]
    assert t.decode([ids]) == ["a dog on the cats xmin=1 [S_2]"]


def test_bad_files(tmp_path):
    with pytest.raises(TextTokenizerError, match="does not exist.*fourm train-tokenizer --modality text"):
        TextTokenizer.load(tmp_path / "missing.json")
    vocab = _reference_json(tmp_path / "ref.json")
    doc = json.loads((tmp_path / "ref.json").read_text())
    doc["added_tokens"][0]["content"], doc["added_tokens"][3]["content"] = "[EOS]", "[PAD]"
    doc["model"]["vocab"] = {**vocab, "[PAD]": 3, "[EOS]": 0}
    (tmp_path / "swapped.json").write_text(json.dumps(doc))
    with pytest.raises(TextTokenizerError, match=r"\[PAD\] must have id 0"):
        TextTokenizer.load(tmp_path / "swapped.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(TextTokenizerError, match="junk.json is not a valid tokenizers JSON"):
        TextTokenizer.load(tmp_path / "junk.json")


# -- from_pretrained: file, directory, hub cache, the released name ----------------------------------------

def test_from_pretrained_file_and_directory(tok, tmp_path):
    tok.save(tmp_path / "a" / "tokenizer.json")
    tok.save(tmp_path / "b" / "text_tokenizer_4m_wordpiece_30k.json")
    texts = ["a person v2=5 [S_0] sleeps"]
    for source in (tmp_path / "a" / "tokenizer.json", tmp_path / "a", str(tmp_path / "b")):
        assert TextTokenizer.from_pretrained(source).encode_ids(texts) == tok.encode_ids(texts), source
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextTokenizerError, match="holds none of text_tokenizer_4m_wordpiece_30k.json, tokenizer.json"):
        TextTokenizer.from_pretrained(tmp_path / "empty")
    with pytest.raises(TextTokenizerError, match="neither a file, a directory, a hub id"):
        TextTokenizer.from_pretrained(tmp_path / "no" / "such" / "file.json")


def _hub_cache(root, repo_id, filename, tok, revision="0123456789abcdef0123456789abcdef01234567"):
    """A local cache laid out as huggingface_hub writes it: models--org--name/snapshots/<rev>/<file>, refs/main."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    tok.save(repo / "snapshots" / revision / filename)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return revision


def test_from_pretrained_hub_id_from_the_local_cache(tok, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    rev = _hub_cache(tmp_path, "someorg/vocab", "text_tokenizer_4m_wordpiece_30k.json", tok)
    texts = ["two cats sleep v1=3"]
    loaded = TextTokenizer.from_pretrained("someorg/vocab")
    assert loaded.encode_ids(texts) == tok.encode_ids(texts)
    assert f"snapshots/{rev}" in loaded.source
    assert TextTokenizer.from_pretrained("someorg/vocab", revision=rev).vocab_size == tok.vocab_size
    _hub_cache(tmp_path, "someorg/plain", "tokenizer.json", tok)  # the second file name looked for
    assert TextTokenizer.from_pretrained("someorg/plain").vocab_size == tok.vocab_size
    with pytest.raises(TextTokenizerError, match=r"'someorg/missing'.*HF_HUB_OFFLINE is set"):
        TextTokenizer.from_pretrained("someorg/missing")


def test_from_pretrained_released_name(tok, tmp_path, monkeypatch):
    """The name resolves through $FOURM_TEXT_TOKENIZER_DIR; without it (and without the reference package)
    the error says where to get the file."""
    import importlib.util

    from fourm_core.tokenizers.text import RELEASED_VOCAB_URL

    monkeypatch.setenv("FOURM_TEXT_TOKENIZER_DIR", str(tmp_path))
    tok.save(tmp_path / "text_tokenizer_4m_wordpiece_30k.json")
    assert TextTokenizer.from_pretrained("4m-wordpiece-30k").vocab_size == tok.vocab_size
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("fourm.") else real_find_spec(name, *a))
    monkeypatch.setenv("FOURM_TEXT_TOKENIZER_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(TextTokenizerError) as info:
        TextTokenizer.from_pretrained("4m-wordpiece-30k")
    msg = str(info.value)
    assert RELEASED_VOCAB_URL in msg and "FOURM_TEXT_TOKENIZER_DIR=DIR" in msg and "elsewhere" in msg
    assert RELEASED_VOCAB_URL.startswith("https://raw.githubusercontent.com/apple/ml-4m/")
    monkeypatch.delenv("FOURM_TEXT_TOKENIZER_DIR")
    with pytest.raises(TextTokenizerError, match="pass the file's path"):
        TextTokenizer.from_pretrained("4m-wordpiece-30k")


def test_decode_ids_keeps_every_token(tok):
    ids = tok.encode_ids(["a dog [EOS] [PAD] person"])[0]
    assert tok.decode_ids(ids) == "a dog [EOS] [PAD] person"
    assert tok.decode([ids]) == ["a dog"]
