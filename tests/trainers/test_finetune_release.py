"""Fine-tuning a released 4M checkpoint (the reference's hub format) with a modality it does not have.

``init_from`` names the shared release set's ``fm/`` directory as it comes (flat ``config.json`` +
``model.safetensors``, written by the reference's own save code). The training stores hold ``tok_rgb`` (which
the checkpoint knows, through the rgb plugin's alias ``tok_rgb@224``) and ``canny_edge`` / ``color_palette``
(which it does not: they get fresh tables).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from trainer_helpers import base_config

from fourm_trainers import train as T
from fourm_trainers.config import TrainConfig
from fourm_trainers.train import build as trainer_build

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "ml4m_release")
FM = RELEASE / "fm"
pytestmark = pytest.mark.requires(
    "conformance", available=(FM / "config.json").is_file(),
    reason=f"the shared release-format set {RELEASE} (fm/) is not present; put shared/ beside the checkout or set "
           f"FOURM_RELEASE_DIR")


def test_finetune_a_released_model_with_new_modalities(tmp_path, stores, monkeypatch):
    from fourm_core.model import FourM

    seen: dict = {}
    orig = trainer_build.build_or_load_model

    def build(*a, **k):
        model = orig(*a, **k)
        seen["p0"] = {n: t.detach().clone() for n, t in model.state_dict().items()}
        return model

    monkeypatch.setattr(trainer_build, "build_or_load_model", build)
    cfg = TrainConfig.from_dict(base_config(tmp_path / "ft", stores, init_from=str(FM), max_steps=40,
                                            optimizer={"lr": 3e-3}, schedule={"warmup_tokens": 0}, log_every=1))
    T.train(cfg)

    released = FourM.from_pretrained(FM).state_dict()
    p0 = seen["p0"]
    kept = [k for k in released if k in p0 and torch.equal(p0[k], released[k])]
    assert len(kept) == len(released), f"released weights changed at step 0: {sorted(set(released) - set(kept))[:5]}"
    new = sorted(set(p0) - set(released))
    assert {k.split(".")[1] for k in new} == {"canny_edge", "color_palette"}, new

    lines = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "split" not in r and "loss" in r]
    assert len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first - 0.5, (first, last)

    final = FourM.from_pretrained(tmp_path / "ft" / "final")
    assert {"canny_edge", "color_palette", "tok_rgb", "text_embedding", "caption"} <= set(final.modalities.names)
    trunk = "encoder.0.attn.qkv.weight"
    assert not torch.equal(final.state_dict()[trunk], released[trunk])
