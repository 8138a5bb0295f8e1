"""save_pretrained / from_pretrained: round trip, strict configs, missing plugins, hub ids offline."""

from __future__ import annotations

import json

import pytest
import torch

from fourm_core.checkpoint import CheckpointError
from fourm_core.model import FourM, build_model
from fourm_core.model.testing import random_mod_dict, tiny_modalities

from_pretrained = FourM.from_pretrained  # what the tests below load through

torch.set_num_threads(1)


@pytest.fixture()
def saved(tmp_path):
    mods = tiny_modalities()
    torch.manual_seed(0)
    model = build_model(mods, {"preset": "debug", "dim": 32, "act": "swiglu", "num_register_tokens": 2},
                        vocab_sizes={"caption": 45}).eval()
    (tmp_path / "tokenizers").mkdir()
    (tmp_path / "tokenizers" / "keep.txt").write_text("mine")
    model.save_pretrained(tmp_path)
    return model, mods, tmp_path


def test_round_trip_identical_outputs(saved):
    model, mods, d = saved
    loaded = FourM.from_pretrained(str(d), modalities=mods).eval()
    assert loaded.config == model.config and loaded.vocab_sizes == model.vocab_sizes
    md = random_mod_dict(mods, batch=2, seed=1, vocab_sizes={"caption": 45})
    a, b = model(md, return_details=True), loaded(md, return_details=True)
    torch.testing.assert_close(a.loss, b.loss, atol=0, rtol=0)
    torch.testing.assert_close(a.encoder.hidden, b.encoder.hidden, atol=0, rtol=0)
    assert (d / "tokenizers" / "keep.txt").read_text() == "mine"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["format_version"] == 1
    assert {m["name"]: m["plugin"] for m in cfg["modalities"]}["depth"] == "fourm-testing"
    assert cfg["vocab_sizes"]["caption"] == 45


def test_missing_plugin_names_modality_and_package(saved):
    _, mods, d = saved
    without = mods.subset([n for n in mods.names if n != "depth"])
    with pytest.raises(CheckpointError, match=r"modality 'depth'.*pip install fourm-testing"):
        from_pretrained(d, modalities=without)


def test_unknown_config_keys_raise(saved):
    _, mods, d = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["dropout"] = 0.1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown key.*'dropout'"):
        from_pretrained(d, modalities=mods)
    cfg["model"].pop("dropout")
    cfg["extra"] = 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown key.*'extra'"):
        from_pretrained(d, modalities=mods)


def test_incompatible_plugin_layout_raises(saved):
    _, mods, d = saved
    import attrs

    other = mods.subset([n for n in mods.names if n != "depth"]).with_spec(
        attrs.evolve(mods["depth"], grid=(2, 2), num_tokens=None))
    with pytest.raises(CheckpointError, match="'depth'.*grid"):
        from_pretrained(d, modalities=other)


def test_hub_id_offline_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"'nobody/no-such-4m'.*huggingface-cli download.*pass its path"):
        from_pretrained("nobody/no-such-4m")
    with pytest.raises(CheckpointError, match=r"'nobody/no-such-4m' from the Hugging Face hub \(LocalEntryNotFoundError: "):
        from_pretrained("nobody/no-such-4m")
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained("./not/here")


# --- strict loading: weights that do not fit the config raise, naming the tensor and the file -----------------

def _rewrite_weights(d, edit):
    from safetensors.torch import load_file, save_file

    w = load_file(str(d / "model.safetensors"))
    edit(w)
    save_file(w, str(d / "model.safetensors"))


def _edit_config(d, edit):
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def test_round_trip_is_bit_exact_for_every_tensor(saved):
    """Catches a save or load that drops, renames, casts or re-initialises any tensor (not only the ones the
    forward pass of one batch happens to use)."""
    model, mods, d = saved
    loaded = FourM.from_pretrained(d, modalities=mods)
    a, b = model.state_dict(), loaded.state_dict()
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), f"{k} changed in the round trip"
    assert [s.name for s in loaded.modalities.specs] == [s.name for s in model.modalities.specs]
    assert loaded.modalities["depth"] == mods["depth"]


def test_missing_weight_names_key_and_file(saved):
    """Catches ``from_pretrained`` loading with ``strict=False`` and silently keeping the random init of a
    tensor the file lacks (the planted fault of issue 24)."""
    _, mods, d = saved
    _rewrite_weights(d, lambda w: w.pop("encoder.1.mlp.fc2.weight"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing \['encoder\.1\.mlp\.fc2\.weight'\], "
                                              r"unexpected \[\]"):
        from_pretrained(d, modalities=mods)


def test_unexpected_weight_names_key_and_file(saved):
    """Catches ``from_pretrained`` ignoring tensors the model has no place for."""
    _, mods, d = saved
    _rewrite_weights(d, lambda w: w.__setitem__("encoder.9.attn.qkv.weight", torch.zeros(3, 3)))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing \[\], unexpected "
                                              r"\['encoder\.9\.attn\.qkv\.weight'\]"):
        from_pretrained(d, modalities=mods)


def test_shape_mismatch_names_key_file_and_both_shapes(saved):
    """Catches a shape mismatch surfacing as torch's bare RuntimeError (no file named) or being skipped."""
    _, mods, d = saved

    def cut(w):
        w["decoder.0.mlp.fc1.weight"] = w["decoder.0.mlp.fc1.weight"][:-1].clone()

    _rewrite_weights(d, cut)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch.*decoder\.0\.mlp\.fc1\.weight "
                                              r"\(84, 32\) \(the model has \(85, 32\)\)"):
        from_pretrained(d, modalities=mods)


@pytest.mark.parametrize(("edit", "pattern"), [
    # a config that promises another width: every matrix has the wrong shape
    (lambda c: c["model"].update(dim=48), r"shape mismatch \['decoder\.0\.context_norm\.bias \(32,\)"),
    # a deeper encoder than the weights: the extra block is missing
    (lambda c: c["model"].update(encoder_depth=3), r"missing \['encoder\.2\."),
    # another caption vocabulary: its embedding table has the wrong number of rows
    (lambda c: c["vocab_sizes"].update(caption=46), r"shape mismatch.*caption\.token_emb\.weight \(45, 32\) "
                                                    r"\(the model has \(46, 32\)\)"),
    # depth no longer decoded: its decoder tensors are unexpected
    (lambda c: next(m for m in c["modalities"] if m["name"] == "depth").update(decoder=False),
     r"unexpected \['decoder_embeddings\.depth\."),
], ids=["wider", "deeper_encoder", "caption_vocab", "depth_not_decoded"])
def test_config_that_does_not_match_the_weights_is_caught(saved, edit, pattern):
    """Catches a config.json edited (or copied from another run) so that it no longer describes the weights."""
    _, mods, d = saved
    _edit_config(d, edit)
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not fit the model described by its "
                                              r"config\.json.*" + pattern):
        from_pretrained(d, modalities=mods)


def test_missing_weights_file_and_bad_config_files_raise(saved):
    """Catches a directory with a config but no weights loading a random model, and unreadable configs."""
    _, mods, d = saved
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors not found.*has no weights"):
        from_pretrained(d, modalities=mods)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        from_pretrained(d, modalities=mods)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json not found: is .* a fourm checkpoint directory"):
        from_pretrained(d, modalities=mods)
    with pytest.raises(CheckpointError, match=r"is a file; pass the checkpoint directory"):
        from_pretrained(d / "tokenizers" / "keep.txt", modalities=mods)


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda c: c.update(format_version=2), r"format_version 2 is not supported \(this fourm reads 1\)"),
    (lambda c: c.pop("format_version"), r"format_version None is not supported"),
    (lambda c: c["modalities"][2].update(colour="red", shade=1),
     r"modalities\[2\] has unknown key\(s\) 'colour', 'shade'; valid keys: name, plugin, version, kind, vocab_size, "),
    (lambda c: c["model"].update(dim="wide"), r"config\.json: "),
], ids=["newer_format", "no_format", "stray_modality_key", "bad_model_value"])
def test_invalid_config_content_raises(saved, edit, pattern):
    """Catches a loader that accepts a newer format or stray keys and then misreads them."""
    _, mods, d = saved
    _edit_config(d, edit)
    with pytest.raises(CheckpointError, match=pattern):
        from_pretrained(d, modalities=mods)


def test_installed_spec_differences(saved):
    """Catches the rebuild of the modalities ignoring what the checkpoint recorded: a renamed (aliased)
    modality, another kind, or a vector of another length raise; the checkpoint's own encoder / decoder /
    pos_emb choices and sequence length win over the installed plugin's."""
    import attrs

    model, mods, d = saved
    base = mods.subset([n for n in mods.names if n not in ("depth", "clipg", "caption")])
    renamed = base.with_spec(attrs.evolve(mods["depth"], name="depth2", aliases=("depth",))).with_spec(
        mods["clipg"]).with_spec(mods["caption"])
    with pytest.raises(CheckpointError, match=r"'depth' is an alias of the installed 'depth2'"):
        from_pretrained(d, modalities=renamed)
    as_vector = base.with_spec(attrs.evolve(mods["depth"], kind="vector", grid=None)).with_spec(
        mods["clipg"]).with_spec(mods["caption"])
    with pytest.raises(CheckpointError, match=r"'depth' is a 'image' modality but the installed fourm-testing 0 "
                                              r"declares kind 'vector'"):
        from_pretrained(d, modalities=as_vector)
    longer = mods.subset([n for n in mods.names if n != "clipg"]).with_spec(attrs.evolve(mods["clipg"], num_tokens=5))
    with pytest.raises(CheckpointError, match=r"'clipg' has 4 tokens but the installed fourm-testing 0 has 5"):
        from_pretrained(d, modalities=longer)
    # the installed plugin now says otherwise; the checkpoint's recorded layout is what the weights need
    changed = mods.subset([n for n in mods.names if n not in ("depth", "caption")]).with_spec(
        attrs.evolve(mods["depth"], decoder=False, pos_emb="learned")).with_spec(
        attrs.evolve(mods["caption"], max_length=12, num_tokens=None))
    loaded = from_pretrained(d, modalities=changed)
    assert loaded.modalities["depth"].decoder is True and loaded.modalities["depth"].pos_emb == "sincos"
    assert loaded.modalities["caption"].max_length == 10 and loaded.modalities["caption"].num_tokens == 10
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_synthesized_modality_is_rebuilt_from_the_checkpoint(saved):
    """Catches the loader requiring a plugin for a modality imported from a reference checkpoint (which it
    must rebuild from config.json, with the plain-text serializer for sequences)."""
    from fourm_core.checkpoint import SYNTHESIZED_PLUGIN

    model, mods, d = saved

    def mark(c):
        for m in c["modalities"]:
            if m["name"] in ("caption", "depth"):
                m["plugin"] = SYNTHESIZED_PLUGIN

    _edit_config(d, mark)
    installed = mods.subset([n for n in mods.names if n not in ("caption", "depth")])
    loaded = from_pretrained(d, modalities=installed)
    cap, dep = loaded.modalities["caption"], loaded.modalities["depth"]
    assert cap.serializer.target == "fourm_core.compat.serializer:PlainTextSerializer"
    assert (cap.kind, cap.max_length, cap.vocab_size, cap.plugin) == ("sequence", 10, 40, SYNTHESIZED_PLUGIN)
    assert (dep.kind, dep.grid, dep.serializer) == ("image", (4, 4), None)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # an installed plugin of the same name takes precedence over the synthesized spec
    assert from_pretrained(d, modalities=mods).modalities["caption"].plugin == "fourm-testing"


def test_saved_files_format(tmp_path, caplog):
    """Catches changes of the on-disk format: the safetensors header metadata, a leftover temporary file,
    config.json written other than sorted with indent 1, and saving into a nested new or an existing
    directory."""
    from safetensors import safe_open

    from fourm_core.checkpoint import save_pretrained

    mods = tiny_modalities()
    torch.manual_seed(0)
    model = build_model(mods, {"preset": "debug", "dim": 32}, vocab_sizes={"caption": 45})
    d = tmp_path / "a" / "b"
    assert save_pretrained(model, d) == d
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "fourm_format_version": "1"}
        assert sorted(f.keys()) == sorted(model.state_dict())
    text = (d / "config.json").read_text()
    cfg = json.loads(text)
    assert text == json.dumps(cfg, indent=1, sort_keys=True)
    assert sorted(cfg) == ["format_version", "modalities", "model", "vocab_sizes"]
    assert cfg["vocab_sizes"] == {"caption": 45, "clipg": 30, "depth": 50}
    depth = next(m for m in cfg["modalities"] if m["name"] == "depth")
    assert depth == {"aliases": [], "channels": None, "decoder": True, "embed_dim": None, "encoder": True,
                     "grid": [4, 4], "kind": "image", "max_length": None, "name": "depth", "num_tokens": 16,
                     "patch_size": None, "plugin": "fourm-testing", "pos_emb": "sincos", "version": "0",
                     "vocab_size": 50}
    rgb = next(m for m in cfg["modalities"] if m["name"] == "rgb")
    assert (rgb["patch_size"], rgb["channels"], rgb["decoder"]) == (8, 3, False)
    t5 = next(m for m in cfg["modalities"] if m["name"] == "t5")
    assert (t5["embed_dim"], t5["max_length"], t5["grid"]) == (12, 6, None)
    import logging

    with caplog.at_level(logging.INFO, logger="fourm_core.checkpoint"):
        model.save_pretrained(d)  # again into the existing directory
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]
    assert [r.getMessage() for r in caplog.records if r.name == "fourm_core.checkpoint"] == [
        f"saved FourM ({model.num_parameters()} parameters) to {d}"]


@pytest.mark.parametrize("path", ["~org/name", ".org/name", "org/", "/org", "a/b/c", "plain"])
def test_paths_that_are_not_hub_ids_are_not_downloaded(monkeypatch, path):
    """Catches the hub-id heuristic sending a missing local path to the hub (an 'org/name' id has exactly one
    '/', does not start with '.', '/' or '~' and does not end with '/')."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"checkpoint directory .* does not exist \(nor is it a hub id like "
                                              r"'org/name'\)"):
        from_pretrained(path)


def test_synthesized_spec_keeps_recorded_aliases(saved):
    """Catches the rebuild of a synthesized modality dropping fields recorded in config.json."""
    from fourm_core.checkpoint import SYNTHESIZED_PLUGIN

    _, mods, d = saved

    def mark(c):
        m = next(m for m in c["modalities"] if m["name"] == "clipg")
        m.update(plugin=SYNTHESIZED_PLUGIN, aliases=["tok_clip_global"])

    _edit_config(d, mark)
    loaded = from_pretrained(d, modalities=mods.subset([n for n in mods.names if n != "clipg"]))
    clipg = loaded.modalities["clipg"]
    assert (clipg.aliases, clipg.kind, clipg.num_tokens, clipg.pos_emb, clipg.serializer) == (
        ("tok_clip_global",), "vector", 4, "learned", None)


def test_missing_plugin_without_recorded_package_name(saved):
    """Catches a wrong guess of the package to install when config.json records no plugin (hand-written or
    older configs): ``fourm-<name with - for _>``, and no 'None' version in the message."""
    _, mods, d = saved

    def strip(c):
        m = next(m for m in c["modalities"] if m["name"] == "depth")
        m["name"] = "depth_map"
        del m["plugin"], m["version"]

    _edit_config(d, strip)
    with pytest.raises(CheckpointError, match=r"modality 'depth_map' \(plugin fourm-depth-map \), which no installed "
                                              r"plugin provides; install it with `pip install fourm-depth-map`"):
        from_pretrained(d, modalities=mods)


def test_synthesized_entry_with_fewer_keys_and_no_version(saved):
    """Catches the rebuild of a synthesized modality reading keys an entry does not have (older or
    hand-written configs) or copying the recorded plugin version onto the rebuilt spec (it is not the
    installed plugin's)."""
    from fourm_core.checkpoint import SYNTHESIZED_PLUGIN

    model, mods, d = saved

    def mark(c):
        m = next(m for m in c["modalities"] if m["name"] == "depth")
        m.update(plugin=SYNTHESIZED_PLUGIN, version="7.1")
        del m["aliases"], m["patch_size"], m["channels"]

    _edit_config(d, mark)
    loaded = from_pretrained(d, modalities=mods.subset([n for n in mods.names if n != "depth"]))
    dep = loaded.modalities["depth"]
    assert (dep.version, dep.aliases, dep.grid, dep.vocab_size, dep.plugin) == (None, (), (4, 4), 50, SYNTHESIZED_PLUGIN)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_installed_layout_checks_per_kind(saved):
    """Catches the per-kind layout checks of the rebuild skipping a kind: a pixel modality's grid must match
    (like an image's); a non-sequence modality keeps the installed length; the message names the recorded
    plugin version; entries without encoder / decoder / pos_emb take the installed plugin's."""
    import attrs

    model, mods, d = saved
    without_depth = mods.subset([n for n in mods.names if n != "depth"])
    with pytest.raises(CheckpointError, match=r"modality 'depth' \(plugin fourm-testing 0\), which no installed"):
        from_pretrained(d, modalities=without_depth)
    other_rgb = mods.subset([n for n in mods.names if n != "rgb"]).with_spec(
        attrs.evolve(mods["rgb"], grid=(2, 2), num_tokens=None))
    with pytest.raises(CheckpointError, match=r"'rgb' has a \(4, 4\) grid but the installed fourm-testing 0 has \(2, 2\); install the plugin version 0 the checkpoint"):
        from_pretrained(d, modalities=other_rgb)
    longer_t5 = mods.subset([n for n in mods.names if n != "t5"]).with_spec(
        attrs.evolve(mods["t5"], max_length=8, num_tokens=None))
    assert from_pretrained(d, modalities=longer_t5).modalities["t5"].max_length == 8

    def strip(c):
        for m in c["modalities"]:
            if m["name"] == "depth":
                del m["encoder"], m["decoder"], m["pos_emb"]

    _edit_config(d, strip)
    loaded = from_pretrained(d, modalities=mods)
    assert loaded.modalities["depth"] == mods["depth"]


def test_recorded_encoder_side_wins_over_the_installed_plugin(saved):
    """Catches the rebuild ignoring a recorded ``encoder`` flag (the weights have the encoder tables)."""
    import attrs

    model, mods, d = saved
    changed = mods.subset([n for n in mods.names if n != "depth"]).with_spec(attrs.evolve(mods["depth"], encoder=False))
    loaded = from_pretrained(d, modalities=changed)
    assert loaded.modalities["depth"].encoder is True
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_read_config_messages_and_optional_sections(saved):
    """Catches garbled key lists in the unknown-key message, and ``read_config`` failing on a config without
    a ``modalities`` list (it validates what is there)."""
    from fourm_core.checkpoint import read_config

    _, mods, d = saved
    _edit_config(d, lambda c: c.update(extra=1, more=2))
    with pytest.raises(CheckpointError, match=r"config\.json: unknown key\(s\) 'extra', 'more'; valid keys: "
                                              r"format_version, model, modalities, vocab_sizes$"):
        read_config(d)
    _edit_config(d, lambda c: [c.pop("extra"), c.pop("more"), c.pop("modalities")])
    assert sorted(read_config(d)) == ["format_version", "model", "vocab_sizes"]


def test_hub_id_resolves_from_a_local_hub_cache(saved, tmp_path, monkeypatch):
    """Catches the hub branch not passing the id to ``snapshot_download`` or not returning its folder: an
    'org/name' id found in a Hugging Face cache (laid out as huggingface_hub lays it out) loads offline."""
    import shutil

    import huggingface_hub.constants as hf_constants

    model, mods, d = saved
    rev = "0" * 40
    repo = tmp_path / "hub" / "models--nobody--tiny-4m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(d / f, snap / f)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # 'nobody/tiny-4m' is not a local directory here
    loaded = from_pretrained("nobody/tiny-4m", modalities=mods)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
