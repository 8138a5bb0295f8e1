"""Trainer tests: config errors, a short end-to-end run, exact kill-and-resume, fine-tuning, 2-process DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from trainer_helpers import base_config

from fourm_trainers.config import TrainConfig, TrainConfigError, apply_overrides
from fourm_trainers.train import lr_at, param_groups, train

REPO = Path(__file__).resolve().parents[2]


def _metrics(out: Path, split: str | None = None) -> list[dict]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in lines if r.get("split") == split]


# ------------------------------------------------------------------------------------------------ config


def test_config_errors_are_clear(tmp_path, stores):
    good = base_config(tmp_path / "o", stores)
    TrainConfig.from_dict(good)
    with pytest.raises(TrainConfigError, match=r"unknown key\(s\) 'batchsize'; valid keys: out_dir, datasets"):
        TrainConfig.from_dict({**good, "batchsize": 3})
    with pytest.raises(TrainConfigError, match=r"optimizer: unknown key\(s\) 'beta'.*betas"):
        TrainConfig.from_dict({**good, "optimizer": {"beta": [0.9, 0.9]}})
    with pytest.raises(TrainConfigError, match=r"datasets\[0\]: unknown key\(s\) 'weigth'"):
        TrainConfig.from_dict({**good, "datasets": [{"path": "a.zarr", "weigth": 2}]})
    with pytest.raises(TrainConfigError, match="masking: .*unknown key.*'input_token'"):
        TrainConfig.from_dict({**good, "masking": {"input_token": 3}})
    with pytest.raises(TrainConfigError, match="model: .*unknown model preset 'huge'"):
        TrainConfig.from_dict({**good, "model": {"preset": "huge"}})
    with pytest.raises(TrainConfigError, match="mixed_precision 'fp8'"):
        TrainConfig.from_dict({**good, "mixed_precision": "fp8"})
    with pytest.raises(TrainConfigError, match="eval_every is set but val_datasets is empty"):
        TrainConfig.from_dict({**good, "eval_every": 5})
    with pytest.raises(TrainConfigError, match="'out_dir' is required"):
        TrainConfig.from_dict({k: v for k, v in good.items() if k != "out_dir"})
    with pytest.raises(TrainConfigError, match="batch_size must be a positive int"):
        TrainConfig.from_dict({**good, "batch_size": 0})
    with pytest.raises(TrainConfigError, match="init_format 'ml4m' needs init_from"):
        TrainConfig.from_dict({**good, "init_format": "ml4m"})
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2", "c.d=[1, 2]"]) == {"a": {"b": 2}, "c": {"d": [1, 2]}}
    with pytest.raises(TrainConfigError, match="expected key=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(TrainConfigError, match="modalities: unknown modality 'depht'"):
        train(TrainConfig.from_dict({**good, "modalities": ["depht"]}))


def test_cli_reports_config_errors(tmp_path, stores):
    fourm = str(Path(sys.executable).parent / "fourm")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({**base_config(tmp_path / "o", stores), "grad_acum": 2}))
    res = subprocess.run([fourm, "train", "--config", str(p)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "unknown key(s) 'grad_acum'" in res.stderr, res.stderr
    res = subprocess.run([fourm, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--resume" in res.stdout and "--set" in res.stdout


def test_lr_schedule_and_param_groups():
    assert lr_at(0, lr=1.0, min_lr=0.1, warmup=100, total=1000) == 0.0
    assert lr_at(50, lr=1.0, min_lr=0.1, warmup=100, total=1000) == pytest.approx(0.5)
    assert lr_at(100, lr=1.0, min_lr=0.1, warmup=100, total=1000) == pytest.approx(1.0)
    assert lr_at(550, lr=1.0, min_lr=0.1, warmup=100, total=1000) == pytest.approx(0.55)
    assert lr_at(5000, lr=1.0, min_lr=0.1, warmup=100, total=1000) == pytest.approx(0.1)
    from fourm_core.model import build_model
    from fourm_registry import get_modalities

    model = build_model(get_modalities().subset(["canny_edge", "tok_rgb"]), "debug")
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            no_decay = p.ndim < 2 or any(k in n for k in ("norm", "bias", "token_emb", "pos_emb", "mod_emb", "mask_token"))
            assert (g["weight_decay"] == 0.0) == no_decay, n
            assert g["trunk"] == (not n.startswith(("encoder_embeddings.", "decoder_embeddings."))), n
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert any(".attn.qkv.weight" in n for n in decayed) and not any("token_emb" in n for n in decayed)


# ------------------------------------------------------------------------------------------------ runs


def test_short_run_eval_final_model_and_exact_resume(tmp_path, stores):
    over = {"val_datasets": [{"path": stores["val"]}], "eval_every": 3, "eval_batches": 2,
            "tokenizers": None, "max_steps": 6}
    full = TrainConfig.from_dict(base_config(tmp_path / "full", stores, **over))
    s = train(full)
    assert s["step"] == 6 and s["stopped_by"] is None
    ref = _metrics(tmp_path / "full")
    assert [r["step"] for r in ref] == [1, 2, 3, 4, 5, 6]
    assert all(set(r) >= {"step", "tokens_seen", "lr", "loss", "loss/canny_edge", "loss/tok_rgb",
                          "loss/color_palette"} for r in ref)
    assert ref[-1]["tokens_seen"] == 6 * 4 * 48  # every budget is filled on this data
    val = _metrics(tmp_path / "full", "val")
    assert [v["step"] for v in val] == [3, 6] and "loss/canny_edge" in val[0]
    # the final model loads through the API path
    from fourm_core.model import FourM

    m = FourM.from_pretrained(tmp_path / "full" / "final")
    assert set(m.modalities.names) == {"canny_edge", "color_palette", "tok_rgb"}

    # interrupted after 4 steps (checkpoint), then resumed: identical per-step losses
    part = TrainConfig.from_dict(base_config(tmp_path / "part", stores, **over))
    s1 = train(part, stop_after=4)
    assert s1["step"] == 4 and s1["stopped_by"] == "stop_after=4"
    assert (tmp_path / "part" / "checkpoints" / "latest").read_text() == "step_4"
    # a line logged after the checkpoint (as a killed run may leave) is dropped on resume
    with open(tmp_path / "part" / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 5, "loss": -1.0}) + "\n")
    s2 = train(part, resume=True)
    assert s2["step"] == 6
    got = _metrics(tmp_path / "part")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(ref, got):
        assert a == b, (a, b)
    assert _metrics(tmp_path / "part", "val") == val
    sd1 = FourM.from_pretrained(tmp_path / "full" / "final").state_dict()
    sd2 = FourM.from_pretrained(tmp_path / "part" / "final").state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_sigterm_saves_and_resume_matches(tmp_path, stores):
    """A real subprocess killed with SIGTERM saves a checkpoint; resuming reproduces the uninterrupted losses."""
    import signal
    import time

    cfg = base_config(tmp_path / "run", stores, max_steps=40)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fourm_trainers.train", "--config", str(p)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_by"] == f"signal {int(signal.SIGTERM)}" and summary["step"] < 40
    res = subprocess.run([sys.executable, "-m", "fourm_trainers.train", "--config", str(p), "--resume"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    got = _metrics(tmp_path / "run")
    ref_cfg = TrainConfig.from_dict(base_config(tmp_path / "ref", stores, max_steps=40))
    train(ref_cfg)
    assert got == _metrics(tmp_path / "ref")


def test_finetune_adds_a_modality_with_frozen_trunk_and_transfer_masking(tmp_path, stores):
    base = TrainConfig.from_dict(base_config(tmp_path / "base", {"train": stores["train_no_palette"]}, max_steps=3))
    train(base)
    from fourm_core.model import FourM

    pre = FourM.from_pretrained(tmp_path / "base" / "final")
    assert "color_palette" not in pre.modalities
    ft = TrainConfig.from_dict(base_config(
        tmp_path / "ft", stores, init_from=str(tmp_path / "base" / "final"), max_steps=4, freeze_trunk_steps=2,
        masking={"transfer": {"inputs": ["tok_rgb"], "targets": ["color_palette"]}}, save_every=2))
    train(ft)
    rec = _metrics(tmp_path / "ft")
    assert all(set(k for k in r if k.startswith("loss/")) == {"loss/color_palette"} for r in rec)
    after = FourM.from_pretrained(tmp_path / "ft" / "final")
    assert "color_palette" in after.modalities
    # the trunk did not move during the frozen steps: compare with the step-2 checkpoint
    from safetensors.torch import load_file

    ck = load_file(str(tmp_path / "ft" / "checkpoints" / "step_2" / "model.safetensors"))
    psd = pre.state_dict()
    trunk = [k for k in psd if not k.startswith(("encoder_embeddings.", "decoder_embeddings."))]
    assert trunk and all(torch.equal(psd[k], ck[k]) for k in trunk)
    # the old tables were kept, the new ones trained; after the freeze the trunk moves
    asd = after.state_dict()
    assert any(not torch.equal(psd[k], asd[k]) for k in trunk)
    k_new = "decoder_embeddings.color_palette.token_emb.weight"
    assert k_new in asd and k_new not in psd


def _free_port() -> int:
    """A TCP port that is free right now (the OS picks it for a socket bound to port 0)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_process_data_parallel(tmp_path, stores):
    """Real 2-process DDP on CPU (gloo) through torchrun: both ranks run and their parameters stay identical."""
    cfg = base_config(tmp_path / "ddp", stores, max_steps=3, batch_size=2)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    script = tmp_path / "run_ddp.py"
    script.write_text(
        "import json, sys, torch, torch.distributed as dist\n"
        "from pathlib import Path\n"
        "from fourm_trainers.config import TrainConfig\n"
        "from fourm_trainers import train as T\n"
        "cfg = TrainConfig.from_yaml(sys.argv[1])\n"
        "captured = {}\n"
        "orig = T.build_or_load_model\n"
        "def grab(*a, **k):\n"
        "    m = orig(*a, **k); captured['m'] = m; return m\n"
        "T.build_or_load_model = grab\n"
        "s = T.train(cfg)\n"
        "vec = torch.cat([p.detach().flatten() for p in captured['m'].parameters()])\n"
        "rank = dist.get_rank()\n"
        "out = [torch.zeros_like(vec) for _ in range(dist.get_world_size())]\n"
        "dist.all_gather(out, vec)\n"
        "rec = {'rank': rank, 'world': dist.get_world_size(), 'num_processes': s['num_processes'],\n"
        "       'same': bool(torch.equal(out[0], out[1])), 'norm': float(vec.norm())}\n"
        "# one file per rank: both ranks share stdout, where their lines can interleave\n"
        "(Path(sys.argv[2]) / f'rank{rank}.json').write_text(json.dumps(rec))\n")
    rank_dir = tmp_path / "ranks"
    rank_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                          "--master_port", str(_free_port()), str(script), str(p), str(rank_dir)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(f.name for f in rank_dir.iterdir()) == ["rank0.json", "rank1.json"]
    recs = [json.loads((rank_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in recs] == [0, 1]
    assert all(r["world"] == 2 and r["num_processes"] == 2 and r["same"] for r in recs)
    lines = _metrics(tmp_path / "ddp")
    assert [r["step"] for r in lines] == [1, 2, 3]  # only the main process writes metrics
    assert lines[-1]["tokens_seen"] == 3 * 2 * 2 * 48  # tokens of both ranks


def _unigram_entropy(store: str, name: str) -> float:
    """Entropy (nats) of the token frequencies of ``name`` in ``store``: the loss of the best predictor that
    ignores context (always the training frequencies), measured in-sample, i.e. its most favourable value."""
    import numpy as np

    from fourm_core.data import Store

    st = Store.open(store, "r")
    toks = np.asarray(st.read_tokens(name, range(st.num_samples), crop=0)).reshape(-1)
    p = np.bincount(toks) / toks.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory, stores) -> dict:
    """The debug model evaluated on held-out photos at init and after 300 steps (one training run shared by the
    slow tests below)."""
    root = tmp_path_factory.mktemp("learn")
    over = dict(batch_size=8, val_datasets=[{"path": stores["val"]}], eval_batches=4,
                optimizer={"lr": 2e-3, "min_lr": 1e-4}, schedule={"warmup_tokens": 5000})
    # before training: one step at the start of the warm-up (lr 0) leaves the initial weights untouched
    train(TrainConfig.from_dict(base_config(root / "init", stores, max_steps=1, eval_every=1, **over)))
    assert _metrics(root / "init")[0]["lr"] == 0.0
    before = _metrics(root / "init", "val")[0]
    s = train(TrainConfig.from_dict(base_config(root / "long", stores, max_steps=300, eval_every=150, **over)))
    after = _metrics(root / "long", "val")[-1]
    assert after["step"] == 300
    print(f"\nvalidation loss {before['loss']:.3f} at init -> {after['loss']:.3f} after 300 steps; "
          f"{s['steps_per_s']:.2f} steps/s, {s['tokens_per_s']:.0f} tokens/s")
    for m in ("canny_edge", "tok_rgb", "color_palette"):
        print(f"  {m}: init {before['loss/' + m]:.3f}  final {after['loss/' + m]:.3f}")
    return {"before": before, "after": after}


def test_debug_model_learns_on_real_photos(learned_run):
    """Held-out validation loss, measured before and after training, falls clearly for every modality."""
    before, after = learned_run["before"], learned_run["after"]
    assert after["loss"] < 0.6 * before["loss"]  # ≈ ln V at init
    for m in ("canny_edge", "tok_rgb", "color_palette"):
        assert after["loss/" + m] < 0.75 * before["loss/" + m], m


@pytest.mark.xfail(strict=True, reason="known gap (measured): after 300 steps the debug model does not beat a "
                   "context-free token-frequency predictor on held-out photos (canny_edge 2.39 vs 2.43 nats, tok_rgb "
                   "6.5 vs 3.98); strict, so it fails loudly once the model learns context")
def test_debug_model_beats_a_token_frequency_baseline_on_real_photos(learned_run, stores):
    """The final per-modality validation loss beats the unigram entropy of the training tokens by 10%.

    The bar for the image modalities is the entropy of their *training* token frequencies: a model that only
    learned the frequencies scores about that in-sample and more on held-out photos (whose frequencies
    differ), so beating it by 10% (0.24 / 0.40 nats here) needs the visible tokens of the same and the other
    modalities (neighbouring patches, the colour ↔ edge relation). color_palette is left out: its targets mix
    sentinel tokens with palette tokens, so token frequencies are no fair bar there.
    """
    import math

    after = learned_run["after"]
    for m in ("canny_edge", "tok_rgb"):
        h = _unigram_entropy(stores["train"], m)
        print(f"  {m}: final {after['loss/' + m]:.3f}; unigram entropy of the training tokens {h:.3f} "
              f"(uniform over the vocabulary {math.log(get_vocab(m)):.3f})")
        assert after["loss/" + m] < 0.9 * h, (m, after["loss/" + m], h)


def get_vocab(name: str) -> int:
    from fourm_registry import get_modalities

    return int(get_modalities()[name].vocab_size)


def test_shipped_configs_parse():
    from fourm_core.masking import MaskingConfig

    paths = sorted((REPO / "trainers" / "configs").glob("*.yaml"))
    assert {p.name for p in paths} >= {"debug_cpu.yaml", "4m7_base_gpu.yaml", "4m21_base_gpu.yaml"}
    for p in paths:
        cfg = TrainConfig.from_yaml(p)
        MaskingConfig.from_dict(cfg.masking)
    c7 = TrainConfig.from_yaml(REPO / "trainers" / "configs" / "4m7_base_gpu.yaml")
    assert MaskingConfig.from_dict(c7.masking).input_tokens == (128, 128) and c7.mixed_precision == "bf16"
    c21 = TrainConfig.from_yaml(REPO / "trainers" / "configs" / "4m21_base_gpu.yaml", ["batch_size=2"])
    assert MaskingConfig.from_dict(c21.masking).target_tokens == (256, 256) and c21.batch_size == 2


def test_bad_tokenizers_directory_fails_before_training(tmp_path, stores):
    """A wrong `tokenizers:` path is reported before step 0, not after training when the model is saved."""
    from fourm_trainers.config import TrainConfig, TrainConfigError
    from fourm_trainers.train import train

    cfg = base_config(tmp_path / "run", stores, max_steps=2, tokenizers=str(tmp_path / "toksTYPO"))
    with pytest.raises(TrainConfigError, match="toksTYPO.*does not exist"):
        train(TrainConfig.from_dict(cfg))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    (tmp_path / "toks").mkdir()
    cfg = base_config(tmp_path / "run2", stores, max_steps=2, tokenizers=str(tmp_path / "toks"))
    with pytest.raises(TrainConfigError, match="fourm train-tokenizer --modality text"):
        train(TrainConfig.from_dict(cfg))
