"""save_pretrained / from_pretrained: round trip, strict configs, missing plugins, hub ids offline."""

from __future__ import annotations

import json

import pytest
import torch

from fourm_core.checkpoint import CheckpointError, from_pretrained
from fourm_core.model import FourM, build_model
from fourm_core.model.testing import random_mod_dict, tiny_modalities

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
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained("./not/here")
