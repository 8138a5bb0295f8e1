"""Trainer tests: config errors, a short end-to-end run, exact kill-and-resume, fine-tuning, 2-process DDP."""

from __future__ import annotations

import json
import math
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


#: the trainer's CLI with one test hook: after the metrics line of step PAUSE_AT it prints ``PAUSED`` and waits
#: for a line on stdin, so that the test's SIGTERM arrives at a known step whatever the machine's speed
_PAUSING_TRAINER = """
import sys
from fourm_trainers import train as T
from fourm_trainers.train import metrics

pause_at = int(sys.argv[1])
_append = metrics.append


def append(path, rec):
    _append(path, rec)
    if rec.get("step") == pause_at and "split" not in rec:
        print(f"PAUSED {pause_at}", flush=True)
        sys.stdin.readline()


metrics.append = append
sys.exit(T.main(sys.argv[2:]))
"""


def test_sigterm_saves_and_resume_matches(tmp_path, stores):
    """A real trainer process sent SIGTERM during step 3 (of 8) finishes that step, saves ``step_3`` and exits
    cleanly; ``--resume`` then reproduces the uninterrupted run's per-step metrics and final weights exactly.

    Catches: the handler not installed (the process dies of the signal), the signal ignored (it trains on to 8),
    no checkpoint at the step it stopped at, a resume that does not restore model, optimizer, data or RNG state."""
    import signal

    from fourm_core.model import FourM

    cfg = base_config(tmp_path / "run", stores, max_steps=8)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    driver = tmp_path / "pausing_trainer.py"
    driver.write_text(_PAUSING_TRAINER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(driver), "3", "--config", str(p)], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            line = proc.stdout.readline()  # blocks until the trainer has logged step 3 (or exits)
            assert line.strip() == "PAUSED 3", (line, (tmp_path / "stderr.txt").read_text()[-3000:])
            proc.send_signal(signal.SIGTERM)
            proc.stdin.write("go\n")
            proc.stdin.close()
            out = proc.stdout.read()
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    log = (tmp_path / "stderr.txt").read_text()[-3000:]
    assert proc.returncode == 0, (proc.returncode, out, log)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_by"] == f"signal {int(signal.SIGTERM)}" and summary["step"] == 3, summary
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "latest").read_text() == "step_3" and (ckpts / "step_3").is_dir()
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1, 2, 3]
    assert not (tmp_path / "run" / "final").exists()  # an interrupted run saves no final model

    res = subprocess.run([sys.executable, "-m", "fourm_trainers.train", "--config", str(p), "--resume"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["step"] == 8
    train(TrainConfig.from_dict(base_config(tmp_path / "ref", stores, max_steps=8)))
    got, ref = _metrics(tmp_path / "run"), _metrics(tmp_path / "ref")
    assert [r["step"] for r in got] == list(range(1, 9))
    assert got == ref
    sd_ref = FourM.from_pretrained(tmp_path / "ref" / "final").state_dict()
    sd_got = FourM.from_pretrained(tmp_path / "run" / "final").state_dict()
    assert sd_ref.keys() == sd_got.keys() and all(torch.equal(sd_ref[k], sd_got[k]) for k in sd_ref)


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
        "from fourm_trainers.train import build as B\n"
        "cfg = TrainConfig.from_yaml(sys.argv[1])\n"
        "captured = {}\n"
        "orig = B.build_or_load_model\n"
        "def grab(*a, **k):\n"
        "    m = orig(*a, **k); captured['m'] = m; return m\n"
        "B.build_or_load_model = grab\n"
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


#: the context store: 8 samples, each holding one token id per modality at all its 196 positions
CONTEXT_SAMPLES, CONTEXT_VOCAB = 8, 16


@pytest.fixture(scope="module")
def context_run(tmp_path_factory) -> dict:
    """60 steps of the debug model on a store where context decides every target: sample k holds the id k at
    every ``canny_edge`` position and ``(3k + 1) % 16`` at every ``tok_rgb`` one (vocabularies of 16). A
    context-free predictor (token frequencies, by position or not) cannot do better than the tokens' entropy,
    ln 8, in-sample; any visible token of the sample gives the answer. Evaluated on the same 8 samples."""
    import numpy as np

    from fourm_core.data import Store
    from fourm_registry import get_modalities

    root = tmp_path_factory.mktemp("context")
    url = str(root / "context.zarr")
    ms = get_modalities()
    n = CONTEXT_SAMPLES
    store = Store.create(url, n, samples_per_shard=8, raw_size=112)
    store.ensure_crops(1, seed=0)
    store.write_crops(0, np.tile(np.array([[[0, 0, 112, 112, 0]]], dtype=np.int32), (n, 1, 1)))
    for name, ids in (("canny_edge", np.arange(n)), ("tok_rgb", (3 * np.arange(n) + 1) % CONTEXT_VOCAB)):
        store.ensure_tokens(ms[name], 1)
        store.write_tokens(ms[name], 0, np.repeat(ids[:, None, None], 196, axis=2))
    cfg = base_config(root / "run", {"train": url}, modalities=["canny_edge", "tok_rgb"], batch_size=4, max_steps=60,
                      vocab_sizes={"canny_edge": CONTEXT_VOCAB, "tok_rgb": CONTEXT_VOCAB},
                      optimizer={"lr": 3e-3, "min_lr": 3e-4}, schedule={"warmup_tokens": 200},
                      val_datasets=[{"path": url}], eval_every=60, eval_batches=n // 4)
    train(TrainConfig.from_dict(cfg))
    return {"url": url, "after": _metrics(root / "run", "val")[-1]}


def test_debug_model_uses_context_to_beat_a_token_frequency_predictor(context_run):
    """After 60 steps the loss is under half of what the best context-free predictor scores on the same
    tokens (ln 8 = 2.08 nats; measured: 0.57 and 0.58). Catches a model that can only learn token frequencies:
    a decoder cut off from the encoder (cross-attention dropped), encoder inputs that carry no token content."""
    after = context_run["after"]
    for m in ("canny_edge", "tok_rgb"):
        h = _unigram_entropy(context_run["url"], m)
        assert h == pytest.approx(math.log(CONTEXT_SAMPLES))
        assert after["loss/" + m] < 0.5 * h, (m, after["loss/" + m], h)


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory, stores) -> dict:
    """The debug model evaluated on held-out photos at init and after 300 steps (one training run shared by the
    slow tests below: about a minute, hence slow)."""
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


@pytest.mark.slow
def test_debug_model_learns_on_real_photos(learned_run):
    """Held-out validation loss, measured before and after training, falls clearly for every modality.

    A weak bar on its own: a token-frequency predictor passes it too (the gap to that predictor is the strict
    xfail below); the default run's test that the model uses context is
    ``test_debug_model_uses_context_to_beat_a_token_frequency_predictor``."""
    before, after = learned_run["before"], learned_run["after"]
    assert after["loss"] < 0.6 * before["loss"]  # ≈ ln V at init
    for m in ("canny_edge", "tok_rgb", "color_palette"):
        assert after["loss/" + m] < 0.75 * before["loss/" + m], m


@pytest.mark.slow
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
