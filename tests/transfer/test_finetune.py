"""``fourm finetune``: a resumed fine-tune repeats an uninterrupted one exactly; a dense task reads a store
modality's raw values; optional extra inputs drop out per sample; bad configs fail naming the key; and (slow)
a classification fine-tune on scikit-image's ``lfw_subset`` learns, reported next to a raw-pixel linear probe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transfer_helpers import write_lfw_folder

from fourm_trainers.finetune import FinetuneConfig, FinetuneConfigError, finetune, load_finetuned

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def lfw(tmp_path_factory) -> Path:
    return write_lfw_folder(tmp_path_factory.mktemp("lfw") / "faces")


@pytest.fixture(scope="module")
def small_folder(lfw, tmp_path_factory) -> Path:
    """12 faces and 12 non-faces of lfw_subset."""
    import shutil

    root = tmp_path_factory.mktemp("small") / "faces"
    for cls in ("face", "non_face"):
        (root / cls).mkdir(parents=True)
        for f in sorted((lfw / cls).iterdir())[:12]:
            shutil.copy(f, root / cls / f.name)
    return root


def _cfg(out: Path, data: dict, **over) -> FinetuneConfig:
    d = {"out_dir": str(out), "data": data, "model": {"preset": "debug"}, "inputs": ["rgb"], "batch_size": 4,
         "max_steps": 6, "optimizer": {"lr": 2e-3, "layer_decay": 0.8}, "warmup_steps": 2, "seed": 1, "cpu": True}
    d.update(over)
    return FinetuneConfig.from_dict(d)


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "split" not in r]


def test_resume_is_exact(tmp_path, small_folder):
    data = {"train": {"path": str(small_folder)}, "val_fraction": 0.25}
    full = _cfg(tmp_path / "full", data, eval_every=3)
    finetune(full)
    part = _cfg(tmp_path / "part", data, eval_every=3)
    s = finetune(part, stop_after=4)
    assert s["stopped_by"] == "stop_after=4" and not (tmp_path / "part" / "final").exists()
    finetune(part, resume=True)
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full") and len(_losses(tmp_path / "full")) == 6
    a = load_finetuned(tmp_path / "full" / "final")[0].state_dict()
    b = load_finetuned(tmp_path / "part" / "final")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    val = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert [v["step"] for v in val] == [3, 6] and 0.0 <= val[-1]["accuracy"] <= 1.0


def test_frozen_backbone_is_a_linear_probe(tmp_path, small_folder):
    cfg = _cfg(tmp_path / "probe", {"train": {"path": str(small_folder)}}, freeze_backbone=True, max_steps=3)
    from fourm_trainers.finetune import FineTuner

    tuner = FineTuner(cfg).build()
    before = {k: v.clone() for k, v in tuner.model.backbone.state_dict().items()}
    head0 = tuner.model.head.fc.weight.detach().clone()
    tuner.fit()
    after = tuner.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head0, tuner.model.head.fc.weight)


@pytest.fixture(scope="module")
def edge_stores(tmp_path_factory) -> dict[str, str]:
    """Two stores of real photo crops (ingested as a user would) labelled with Canny edges (weight-free); the
    training store also holds ``tok_rgb`` ids (the mean colour of each patch, 8 levels per channel) for the
    first half of its samples only, so that an optional extra input is present for some samples."""
    from PIL import Image
    from skimage import data as sd

    from fourm_core.data import Store, ingest
    from fourm_core.data.label_job import label
    from fourm_registry import get_modalities

    root = tmp_path_factory.mktemp("edges")
    rng = np.random.default_rng(0)
    out = {}
    for split, names in (("train", ("astronaut", "coffee", "chelsea", "rocket")), ("val", ("coffee",))):
        folder = root / split
        folder.mkdir()
        for n in names:
            img = getattr(sd, n)()
            for i in range(4):
                s = min(img.shape[:2]) // 2
                t, l = rng.integers(0, img.shape[0] - s), rng.integers(0, img.shape[1] - s)
                Image.fromarray(img[t:t + s, l:l + s]).resize((112, 112)).save(folder / f"{n}_{i}.png")
        url = str(root / f"{split}.zarr")
        ingest(str(folder), url, raw_size=112, samples_per_shard=8, progress=False)
        label(url, ["canny_edge"], progress=False)
        if split == "train":
            store = Store.open(url, "r+")
            n = store.num_samples
            store.ensure_crops(1, seed=0)
            store.write_crops(0, np.tile(np.array([[[0, 0, 112, 112, 0]]], dtype=np.int32), (n, 1, 1)))
            raws = store.read_raw_array("rgb", np.arange(8))
            mean = raws.reshape(8, 14, 8, 14, 8, 3).mean((2, 4)) // 32
            ids = (mean[..., 0] * 64 + mean[..., 1] * 8 + mean[..., 2]).astype(np.int64).reshape(8, 1, 196)
            spec = get_modalities()["tok_rgb"]
            store.ensure_tokens(spec, 1)
            store.write_tokens(spec, 0, ids)  # shard 0 (samples 0-7) only
        out[split] = url
    return out


def test_dense_edges_from_a_store_learn_and_resume(tmp_path, edge_stores):
    data = {"train": {"path": edge_stores["train"], "format": "store"},
            "val": {"path": edge_stores["val"], "format": "store"}}
    task = {"type": "dense", "target": "canny_edge", "loss": "cross_entropy", "num_classes": 2, "out_size": [32, 32],
            "width": 8, "stages": 1}
    full = _cfg(tmp_path / "full", data, task=task, max_steps=4, eval_every=4)
    s = finetune(full)
    assert set(s["val"]) >= {"loss"} and np.isfinite(s["val"]["loss"])
    part = _cfg(tmp_path / "part", data, task=task, max_steps=4, eval_every=4)
    finetune(part, stop_after=2)
    finetune(part, resume=True)
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full")
    model, meta = load_finetuned(tmp_path / "full" / "final")
    with torch.no_grad():
        y = model(torch.zeros(2, 3, 224, 224))
    assert y.shape == (2, 2, 32, 32) and meta["config"]["task"]["target"] == "canny_edge"


def test_optional_extra_input_drops_per_sample(tmp_path, edge_stores, monkeypatch):
    """rgb + an optional extra input (tok_rgb, stored for half of the samples): samples without it run on rgb
    alone, training drops it per sample with its probability, and the fine-tuned model runs with and without."""
    from fourm_core.backbone import Backbone
    from fourm_trainers.finetune import trainer as T

    seen = []
    orig = Backbone.forward_features

    def spy(self, inputs, present=None):
        seen.append({k: v.clone() for k, v in (present or {}).items() if k in inputs})
        return orig(self, inputs, present)

    monkeypatch.setattr(Backbone, "forward_features", spy)
    data = {"train": {"path": edge_stores["train"], "format": "store"}}
    task = {"type": "dense", "target": "canny_edge", "loss": "cross_entropy", "num_classes": 2, "out_size": [16, 16],
            "width": 8, "stages": 1}
    cfg = _cfg(tmp_path / "opt", data, task=task, inputs=["rgb", "tok_rgb"], input_dropout={"tok_rgb": 0.5},
               max_steps=4, batch_size=8)
    tuner = T.FineTuner(cfg).build()
    tuner.fit()
    flags = torch.cat([p["tok_rgb"] for p in seen])
    assert 0 < int(flags.sum()) < 16  # at most the 8 stored samples per epoch, fewer after dropout
    with torch.no_grad():
        y_rgb = tuner.model(torch.zeros(1, 3, 224, 224))
        y_both = tuner.model({"rgb": torch.zeros(1, 3, 224, 224), "tok_rgb": torch.zeros(1, 196, dtype=torch.long)})
    assert y_rgb.shape == y_both.shape and not torch.allclose(y_rgb, y_both)
    # the dropout itself: probability 0.5, seeded by the step
    tuner.state.step = 7
    ones = {"tok_rgb": torch.ones(4000, dtype=torch.bool)}
    kept = tuner._drop_inputs(ones, 4000)["tok_rgb"]
    assert 0.45 < kept.float().mean() < 0.55 and torch.equal(kept, tuner._drop_inputs(ones, 4000)["tok_rgb"])


def test_config_errors_name_the_key(tmp_path, small_folder):
    data = {"train": {"path": str(small_folder)}}
    with pytest.raises(FinetuneConfigError, match="unknown key.*'lr'|'lr'"):
        FinetuneConfig.from_dict({"out_dir": "x", "data": data, "lr": 1})
    with pytest.raises(FinetuneConfigError, match="task.type 'regress'"):
        _cfg(tmp_path, data, task={"type": "regress"})
    with pytest.raises(FinetuneConfigError, match="needs task.target"):
        _cfg(tmp_path, {"train": {"path": "s.zarr", "format": "store"}}, task={"type": "dense"})
    with pytest.raises(FinetuneConfigError, match="input_dropout names 'rgb'"):
        _cfg(tmp_path, data, input_dropout={"rgb": 0.5})
    with pytest.raises(FinetuneConfigError, match="at least two class folders"):
        finetune(_cfg(tmp_path / "one", {"train": {"path": str(small_folder / "face")}}))
    with pytest.raises(FinetuneConfigError, match="inputs: unknown modality .nope.; known modalities"):
        finetune(_cfg(tmp_path / "bad", data, inputs=["nope"]))


def test_cli_runs_a_shipped_config(tmp_path, small_folder):
    from click.testing import CliRunner

    from fourm_trainers.cli_finetune import finetune_command

    r = CliRunner().invoke(finetune_command, ["--config", "classify_cpu", "--set", f"out_dir={tmp_path / 'cli'}",
                                              "--set", f"data.train.path={small_folder}", "--set", "max_steps=2",
                                              "--set", "batch_size=4", "--set", "cpu=true"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["step"] == 2 and "accuracy" in summary["val"]


@pytest.mark.slow
def test_lfw_faces_fine_tune_learns_next_to_a_raw_pixel_probe(tmp_path, lfw):
    """A from-scratch debug 4M encoder + linear head on 150 lfw_subset images, 50 held out (balanced)."""
    from fourm_trainers.finetune.data import list_image_folder, split_items
    from fourm_trainers.finetune.probe import linear_probe_accuracy

    torch.set_num_threads(1)
    cfg = FinetuneConfig.from_yaml("classify_cpu", [f"out_dir={tmp_path / 'run'}", f"data.train.path={lfw}",
                                                    "data.val_fraction=0.25", "max_steps=300", "eval_every=100",
                                                    "save_every=0", "cpu=true"])
    summary = finetune(cfg)
    acc = summary["val"]["accuracy"]
    _, items = list_image_folder(lfw)
    train, val = split_items(items, 0.25, cfg.seed)
    probe = linear_probe_accuracy(train, val)
    print(f"\nlfw_subset held-out accuracy: fine-tune {acc:.3f}, raw-pixel linear probe {probe:.3f} "
          f"({len(train)} train / {len(val)} held out)")
    assert acc >= 0.8, summary


def test_fourm_group_has_finetune_and_mistakes_are_one_error_line(tmp_path):
    from click.testing import CliRunner

    from fourm_registry import cli as fcli
    from fourm_registry import get_manager

    if "finetune" not in fcli.cli.commands:
        get_manager().register_commands(fcli.cli)
    assert "finetune" in fcli.cli.commands
    bad = tmp_path / "bad.yaml"
    bad.write_text("out_dir: x\ndata: {train: {path: nowhere}}\ntask: {type: classification, heads: linear}\n")
    for args, expected in ((["--config", "no_such_config"], "does not exist"),
                           (["--config", str(bad)], "heads")):
        r = CliRunner().invoke(fcli.cli, ["finetune", *args])
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], r.output
