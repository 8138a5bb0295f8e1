"""Per-dataset training mixtures: each dataset's samples use only its modalities and its alphas, the mixture
weights decide how often each dataset is drawn, and a real run trains on such a mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trainer_helpers import base_config

from fourm_trainers.config import TrainConfig, TrainConfigError
from fourm_trainers.train import build, metrics, train


def _batches(cfg: TrainConfig, n_batches: int, batch_size: int = 16):
    """(source, mod_dict) of ``n_batches`` training batches built as the trainer builds them."""
    modalities = build.discover_modalities([d.path for d in cfg.datasets], cfg.modalities)
    _, text = build.vocab_sizes(cfg, modalities)
    masker = build.make_masker(cfg, cfg.datasets, modalities, text)
    dataset, sampler = build.train_data(cfg, modalities, world=1, rank=0)
    out = []
    gen = torch.Generator().manual_seed(0)
    for i, item in enumerate(build.make_loader(dataset, sampler, batch_size, 0)):
        if i >= n_batches:
            break
        out.append((item["source"], item["present"],
                    masker(item["tensors"], present=item["present"], generator=gen, source=item["source"])))
    return masker, out


def _used(entry: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input tokens, target tokens) per row."""
    return (~entry["input_mask"]).sum(1), (~entry["target_mask"]).sum(1)


def test_each_dataset_uses_only_its_modalities(tmp_path, stores):
    """The same store twice: as an image dataset (inputs tok_rgb, targets canny_edge) and as a text-only one
    (color_palette -> color_palette, the C4 role). Rows of the text dataset never load the image modalities
    (present is False although the store has them) and use the palette as input and target; rows of the image
    dataset never touch the palette, never input canny_edge, never target tok_rgb."""
    cfg = TrainConfig.from_dict(base_config(tmp_path, stores, datasets=[
        {"path": stores["train"], "weight": 0.5, "inputs": "tok_rgb", "targets": ["canny_edge"]},
        {"path": stores["train"], "weight": 0.5, "inputs": ["color_palette"], "targets": ["color_palette"],
         "input_alphas": 1.0, "target_alphas": 1.0, "masking": {"input_tokens": [4, 8], "target_tokens": 12}}]))
    masker, batches = _batches(cfg, 4)
    assert len(masker.maskers) == 2 and masker.masker_of == [0, 1]
    assert masker.num_encoder_tokens == 24 and masker.num_decoder_tokens == 24
    src = torch.cat([s for s, _, _ in batches])
    assert 0 < int((src == 1).sum()) < len(src)  # both datasets drawn
    for source, present, md in batches:
        img, txt = source == 0, source == 1
        assert bool(present["color_palette"][img].any()) is False
        assert bool(present["tok_rgb"][txt].any()) is False and bool(present["canny_edge"][txt].any()) is False
        rgb_in, rgb_tg = _used(md["tok_rgb"])
        can_in, can_tg = _used(md["canny_edge"])
        pal_in, pal_tg = _used(md["color_palette"])
        assert (pal_in[img] == 0).all() and (pal_tg[img] == 0).all()
        assert (can_in[img] == 0).all() and (rgb_tg[img] == 0).all()
        assert (rgb_in[img] == 24).all() and (can_tg[img] == 24).all()
        assert (rgb_in[txt] == 0).all() and (rgb_tg[txt] == 0).all() and (can_in[txt] == 0).all()
        assert (can_tg[txt] == 0).all()
        assert (pal_in[txt] <= 8).all() and (pal_tg[txt] > 0).all() and (pal_tg[txt] <= 12).all()


def test_each_dataset_uses_its_own_alphas(tmp_path, stores):
    """Two datasets of the same store with opposite Dirichlet alphas over canny_edge and tok_rgb: 0.01 puts
    (almost) the whole input budget of a sample on one modality, 1000 splits it evenly."""
    cfg = TrainConfig.from_dict(base_config(tmp_path, stores, modalities=["canny_edge", "tok_rgb"], datasets=[
        {"path": stores["train"], "input_alphas": 0.01, "target_alphas": 0.01},
        {"path": stores["train"], "input_alphas": 1000.0, "target_alphas": 1000.0}]))
    _, batches = _batches(cfg, 6)
    share = {0: [], 1: []}
    for source, _, md in batches:
        a, _ = _used(md["canny_edge"])
        b, _ = _used(md["tok_rgb"])
        top = torch.maximum(a, b).float() / (a + b).float()
        for k in (0, 1):
            share[k].append(top[source == k])
    sparse, even = torch.cat(share[0]), torch.cat(share[1])
    assert len(sparse) > 20 and len(even) > 20
    assert float(sparse.mean()) > 0.95 and float(even.mean()) < 0.65


def test_mixture_weights_decide_how_often_each_dataset_is_drawn(tmp_path, stores):
    cfg = TrainConfig.from_dict(base_config(tmp_path, stores, datasets=[
        {"path": stores["train"], "weight": 0.8, "inputs": ["tok_rgb"], "targets": ["canny_edge"]},
        {"path": stores["train_no_palette"], "weight": 0.2}]))
    modalities = build.discover_modalities([d.path for d in cfg.datasets], None)
    dataset, sampler = build.train_data(cfg, modalities, world=1, rank=0)
    order = np.concatenate([sampler.epoch_order(e)[:, 0] for e in range(40)])
    frac = float((order < dataset.sizes[0]).mean())
    assert abs(frac - 0.8) < 0.03, frac


def test_per_dataset_config_errors_are_clear(tmp_path, stores):
    base = base_config(tmp_path, stores)
    with pytest.raises(TrainConfigError, match=r"datasets\[0\].*unknown key.*in_domains.*inputs"):
        TrainConfig.from_dict({**base, "datasets": [{"path": stores["train"], "in_domains": "rgb"}]})
    with pytest.raises(TrainConfigError, match="give input_alphas and target_alphas together"):
        TrainConfig.from_dict({**base, "datasets": [{"path": stores["train"], "input_alphas": 0.5}]})
    with pytest.raises(TrainConfigError, match="input_alphas/target_alphas and masking.mixture both set"):
        TrainConfig.from_dict({**base, "datasets": [{"path": stores["train"], "input_alphas": 1, "target_alphas": 1,
                                                      "masking": {"mixture": [{"name": "a"}]}}]})
    with pytest.raises(TrainConfigError, match=r"dataset .*train.zarr.*masking: .*input_tokens"):
        TrainConfig.from_dict({**base, "datasets": [{"path": stores["train"], "masking": {"input_tokens": [9, 2]}}]})
    cfg = TrainConfig.from_dict({**base, "datasets": [{"path": stores["train"], "inputs": ["tok_rgb", "depth"],
                                                       "targets": ["canny_edge"]}]})
    modalities = build.discover_modalities([stores["train"]], None)
    with pytest.raises(TrainConfigError, match=r"modalities \['depth'\] are not trained"):
        build.train_data(cfg, modalities, world=1, rank=0)
    with pytest.raises(TrainConfigError, match="unknown modality 'depth'"):
        build.make_masker(cfg, cfg.datasets, modalities, None)


def test_training_on_a_per_dataset_mixture(tmp_path, stores):
    """A real run on the mixture (image dataset + text-only dataset, validation with its own modalities):
    it trains, logs losses of both datasets' targets, and the config round-trips through config.yaml."""
    over = {"max_steps": 3, "batch_size": 4, "eval_every": 3, "eval_batches": 1,
            "datasets": [{"path": stores["train"], "weight": 0.6, "inputs": ["tok_rgb", "canny_edge"],
                          "targets": ["tok_rgb", "canny_edge"]},
                         {"path": stores["train"], "weight": 0.4, "inputs": ["color_palette"],
                          "targets": ["color_palette"], "input_alphas": 1.0, "target_alphas": 1.0}],
            "val_datasets": [{"path": stores["val"], "inputs": ["tok_rgb"], "targets": ["canny_edge"]}]}
    cfg = TrainConfig.from_dict(base_config(tmp_path / "mix", stores, **over))
    summary = train(cfg)
    recs = metrics.read(tmp_path / "mix" / "metrics.jsonl")
    steps = [r for r in recs if r.get("split") != "val"]
    assert len(steps) == 3 and all(np.isfinite(r["loss"]) for r in steps)
    seen = set().union(*(set(r) for r in steps))
    assert {"loss/tok_rgb", "loss/canny_edge", "loss/color_palette"} <= seen
    val = [r for r in recs if r.get("split") == "val"]
    assert len(val) == 1 and set(k for k in val[0] if k.startswith("loss/")) == {"loss/canny_edge"}
    assert summary["val"]["loss/canny_edge"] == val[0]["loss/canny_edge"]
    import yaml

    back = TrainConfig.from_dict(yaml.safe_load((tmp_path / "mix" / "config.yaml").read_text()))
    assert back == cfg


def test_dataset_masker_with_one_config_is_the_plain_masker():
    """Datasets without their own masking share one Masker: the result is bit-identical to a plain Masker's
    with the same generator (runs without per-dataset settings mask exactly as before)."""
    from fourm_core.masking import DatasetMasker, Masker, MaskingConfig, MaskingError
    from fourm_registry import get_modalities

    mods = get_modalities().subset(["canny_edge", "tok_rgb"])
    cfg = MaskingConfig.from_dict({"input_tokens": [8, 20], "target_tokens": 16})
    batch = {"canny_edge": torch.randint(0, 32, (6, 196)), "tok_rgb": torch.randint(0, 512, (6, 196))}
    dm = DatasetMasker(mods, [cfg, MaskingConfig.from_dict(cfg.to_dict())])
    assert len(dm.maskers) == 1
    a = dm(batch, generator=torch.Generator().manual_seed(5), source=torch.tensor([0, 1, 0, 1, 1, 0]))
    b = Masker(mods, cfg)(batch, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a[m][k], b[m][k]) for m in b for k in b[m])
    with pytest.raises(MaskingError, match="inputs/targets restrict the random masking"):
        MaskingConfig.from_dict({"inputs": ["rgb"], "transfer": {"inputs": ["rgb"], "targets": ["depth"]}})
    two = DatasetMasker(mods, [cfg, MaskingConfig.from_dict({**cfg.to_dict(), "inputs": ["tok_rgb"]})])
    with pytest.raises(MaskingError, match=r"source must be \(6,\) dataset indices in \[0, 2\)"):
        two(batch, source=torch.tensor([0, 1, 2, 0, 0, 0]))
