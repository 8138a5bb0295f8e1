"""The trainer's parts on their own: per-kind rules, metrics.jsonl, checkpoint state, the stop signal, the
``python -m fourm_trainers.train`` entry (the click command) and :class:`Trainer` driven step by step."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest
import yaml
from trainer_helpers import base_config

from fourm_registry.specs import KINDS
from fourm_trainers.config import TrainConfig, TrainConfigError
from fourm_trainers.train import Trainer, TrainState, kind_rules, main, train
from fourm_trainers.train import checkpointing, metrics


def test_kind_rules_cover_every_kind():
    """Pre-tokenized kinds are found by their tokens, raw-input kinds by their raw data; sequences take the text
    tokenizer's vocabulary, image and vector modalities have a tokenizer of their own."""
    got = {k: tuple(kind_rules(SimpleNamespace(kind=k))) for k in KINDS}
    assert got == {"image": ("tokens", "own"), "vector": ("tokens", "own"), "sequence": ("tokens", "text"),
                   "pixels": ("raw", None), "embedding_sequence": ("raw", None)}
    assert tuple(kind_rules(SimpleNamespace(kind="hologram"))) == (None, None)


def test_metrics_append_and_truncate(tmp_path):
    path = tmp_path / "metrics.jsonl"
    metrics.truncate(path, 3)  # no file yet: nothing to do
    assert not path.exists()
    for step in (1, 2, 3):
        metrics.append(path, {"step": step, "loss": float(step)})
    metrics.append(path, {"split": "val", "step": 3, "loss": 0.5})
    metrics.append(path, {"step": 4, "loss": 4.0})
    metrics.truncate(path, 3)
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 3.0},
        {"split": "val", "step": 3, "loss": 0.5}]


def test_train_state_round_trip_and_missing_checkpoint(tmp_path):
    st = TrainState()
    st.step, st.tokens_seen, st.epoch, st.position, st.skipped_steps = 5, 960, 1, 12, 2
    back = TrainState()
    back.load_state_dict(st.state_dict())
    assert back.state_dict() == {"step": 5, "tokens_seen": 960, "epoch": 1, "position": 12, "skipped_steps": 2}
    with pytest.raises(TrainConfigError, match="no checkpoint in .*run without --resume"):
        checkpointing.load_latest(SimpleNamespace(), tmp_path / "checkpoints")


def test_stop_on_signal_sets_a_flag_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with checkpointing.StopOnSignal() as stop:
        assert stop.signal is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_module_entry_is_the_click_command(tmp_path, capsys):
    """``python -m fourm_trainers.train`` runs ``fourm train``: same options, hidden ``--stop-after``, config
    errors as one ``error:`` line with status 2."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--set" in out and "--stop-after" not in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"out_dir": str(tmp_path / "o"), "datasets": [{"path": "a.zarr"}], "grad_acum": 2}))
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown key(s) 'grad_acum'" in err
    assert main([]) == 2  # --config is required
    assert "Missing option '--config'" in capsys.readouterr().err


def test_trainer_driven_by_hand_matches_train(tmp_path, stores):
    """build → step → step → save_checkpoint gives the losses, token counts and checkpoint that train() logs."""
    over = {"tokenizers": None, "max_steps": 2, "grad_accum": 2}
    s = train(TrainConfig.from_dict(base_config(tmp_path / "ref", stores, **over)))
    ref = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]

    trainer = Trainer(TrainConfig.from_dict(base_config(tmp_path / "hand", stores, **over))).build()
    batches = trainer.batches()
    trainer.model.train()
    stats = [trainer.step(batches), trainer.step(batches)]
    assert trainer.state.step == 2 and trainer.state.tokens_seen == s["tokens_seen"] == 2 * 2 * 4 * 48
    assert trainer.state.position == 2 * 2 * 4  # micro-batches of 4 taken
    for r, st in zip(ref, stats):
        assert (r["lr"], r["loss"], r["grad_norm"]) == (st.lr, st.mean_loss, st.grad_norm)
        assert {k[5:]: v for k, v in r.items() if k.startswith("loss/")} == st.losses
    trainer.save_checkpoint()
    assert (tmp_path / "hand" / "checkpoints" / "latest").read_text() == "step_2"
    with pytest.raises(TrainConfigError, match="no val_datasets"):
        trainer.evaluate()
