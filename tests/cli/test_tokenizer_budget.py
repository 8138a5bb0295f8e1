"""``fourm train-tokenizer --small --minutes M`` and ``FOURM_MAX_STEPS``: a tokenizer sized to the machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image


@pytest.fixture()
def photos(tmp_path):
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    img = data.astronaut()
    for i in range(6):
        Image.fromarray(np.ascontiguousarray(img[i * 40:i * 40 + 256, i * 30:i * 30 + 256])).save(folder / f"{i}.png")
    return folder


def test_small_overrides_keep_the_token_grid():
    from fourm_registry import get_modalities
    from fourm_trainers.tokenizer_budget import small_tokenizer_overrides

    mods = get_modalities()
    for name in ("tok_rgb", "canny_edge"):
        spec = mods[name]
        o = small_tokenizer_overrides(spec)
        assert [s // o["patch_size"] for s in o["image_size"]] == list(spec.grid) and o["depth"] == 1
        tok = spec.tokenizer.build(**o)
        assert tuple(tok.input_size) == tuple(o["image_size"])


def test_minutes_budget_measures_then_extends(photos, tmp_path):
    from fourm_trainers.tokenizer_budget import CALIBRATION_STEPS, small_tokenizer_overrides, train_tokenizer_for
    from fourm_trainers.tokenizer_train import TokenizerTrainConfig

    from fourm_registry import get_modalities

    spec = get_modalities()["tok_rgb"]
    cfg = TokenizerTrainConfig(batch_size=2, cpu=True, num_recon_images=1,
                               tokenizer={**small_tokenizer_overrides(spec), "dim": 16, "num_heads": 1})
    out = tmp_path / "toks"
    # a budget far above what the capped run needs: the extension always reaches the cap, however busy the CPU
    summary = train_tokenizer_for("tok_rgb", str(photos), out, 5.0, config=cfg, max_steps=CALIBRATION_STEPS + 6)
    assert CALIBRATION_STEPS < summary["steps"] <= CALIBRATION_STEPS + 6  # measured, extended, capped
    assert summary["start_step"] >= CALIBRATION_STEPS  # the extension resumed the calibration run
    assert json.loads((out / "tok_rgb" / "config.json").read_text())
    with pytest.raises(ValueError, match="--minutes must be > 0"):
        train_tokenizer_for("tok_rgb", str(photos), out, 0, config=cfg)


def test_cli_small_minutes_and_the_steps_cap(photos, tmp_path, monkeypatch):
    from fourm_registry import get_manager
    from fourm_registry.cli import cli

    if "train-tokenizer" not in cli.commands:
        get_manager().register_commands(cli)
    monkeypatch.setenv("FOURM_MAX_STEPS", "3")
    out = tmp_path / "toks"
    res = CliRunner().invoke(cli, ["train-tokenizer", "--modality", "tok_rgb", "--data", str(photos), "--out",
                                   str(out), "--small", "--minutes", "5", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["steps"] == 3  # the cap, far below what 5 minutes would train
    cfg = json.loads((out / "tok_rgb" / "config.json").read_text())
    assert "112" in json.dumps(cfg)  # the small architecture's input size
    monkeypatch.setenv("FOURM_MAX_STEPS", "zero")
    res = CliRunner().invoke(cli, ["train-tokenizer", "--modality", "tok_rgb", "--data", str(photos), "--out",
                                   str(tmp_path / "t2"), "--steps", "2"])
    assert res.exit_code == 2 and res.output.startswith("error: FOURM_MAX_STEPS='zero'"), res.output
