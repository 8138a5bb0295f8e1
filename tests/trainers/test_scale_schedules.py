"""The LR / weight-decay schedules (literal values), their config errors, and the NaN/inf step guard in real
short training runs (the logged LR and weight decay follow the schedules; a NaN step changes no weight)."""

from __future__ import annotations

import math

import pytest
import torch
from trainer_helpers import base_config

from fourm_trainers.config import TrainConfig, TrainConfigError
from fourm_trainers.train import Trainer, metrics
from fourm_trainers.train.schedules import LRSchedule, WDSchedule, lr_at, schedules_for


def test_lr_schedules_literal_values():
    """Warm-up, then each shape, at hand-computed points."""
    cos = LRSchedule(kind="cosine", lr=1.0, min_lr=0.1, warmup=100, total=1100)
    assert [cos(t) for t in (0, 50, 100)] == [0.0, 0.5, 1.0]
    assert cos(600) == pytest.approx(0.55) and cos(1100) == pytest.approx(0.1) and cos(5000) == pytest.approx(0.1)
    lin = LRSchedule(kind="linear", lr=1.0, min_lr=0.2, warmup=100, total=1100)
    assert lin(100) == 1.0 and lin(350) == pytest.approx(0.8) and lin(1100) == pytest.approx(0.2)
    const = LRSchedule(kind="constant", lr=0.3, min_lr=0.0, warmup=10, total=100)
    assert const(5) == pytest.approx(0.15) and const(10) == const(99) == const(10**6) == 0.3
    # inverse sqrt, time scale = warm-up (100): lr * sqrt(100 / tokens); linear cool-down over the last 200
    inv = LRSchedule(kind="inverse_sqrt", lr=1.0, min_lr=0.0, warmup=100, total=1000, cooldown=200)
    assert inv(50) == 0.5 and inv(100) == 1.0
    assert inv(400) == pytest.approx(0.5) and inv(800) == pytest.approx(1 / math.sqrt(8))
    assert inv(900) == pytest.approx(0.5 / math.sqrt(8)) and inv(1000) == pytest.approx(0.0)
    assert inv(2000) == pytest.approx(0.0)
    # an explicit time scale, no cool-down: lr / sqrt((t + T) / T) with t counted from the end of the warm-up
    inv2 = LRSchedule(kind="inverse_sqrt", lr=2.0, warmup=0, total=10**9, timescale=1000)
    assert inv2(0) == 2.0 and inv2(3000) == pytest.approx(1.0)
    # the former build.lr_at is the cosine schedule
    assert lr_at(550, lr=1.0, min_lr=0.1, warmup=100, total=1000) == pytest.approx(0.55)


def test_weight_decay_schedules_literal_values():
    cos = WDSchedule(kind="cosine", start=0.05, end=0.2, total=1000)
    assert cos(0) == pytest.approx(0.05) and cos(500) == pytest.approx(0.125) and cos(1000) == pytest.approx(0.2)
    lin = WDSchedule(kind="linear", start=0.04, end=0.0, total=400)
    assert lin(100) == pytest.approx(0.03) and lin(800) == pytest.approx(0.0)
    assert WDSchedule(kind="constant", start=0.05, end=0.9, total=10)(7) == 0.05


def test_schedule_config_errors_are_clear(tmp_path):
    base = {"out_dir": str(tmp_path), "datasets": ["x.zarr"]}
    cases = [
        ({"lr": "cosine_restarts"}, "schedule.lr 'cosine_restarts' is not one of cosine, linear, constant, inverse_sqrt"),
        ({"weight_decay": "step"}, "schedule.weight_decay 'step' is not one of constant, cosine, linear"),
        ({"lr": "inverse_sqrt"}, "inverse_sqrt needs timescale_tokens > 0 or warmup_tokens > 0"),
        ({"cooldown_tokens": 10}, "cooldown_tokens applies to the inverse_sqrt schedule only"),
        ({"lr": "inverse_sqrt", "warmup_tokens": 60, "cooldown_tokens": 50, "total_tokens": 100},
         r"warmup_tokens \+ cooldown_tokens \(60 \+ 50\) exceed total_tokens 100"),
        ({"warmup": 3}, "unknown key.*warmup"),
    ]
    for sched, msg in cases:
        with pytest.raises(TrainConfigError, match=msg):
            TrainConfig.from_dict({**base, "schedule": sched})
    with pytest.raises(TrainConfigError, match="skip_grad_norm must be > 0 or null"):
        TrainConfig.from_dict({**base, "skip_grad_norm": 0})
    cfg = TrainConfig.from_dict({**base, "optimizer": {"lr": 1e-3, "weight_decay": 0.05},
                                 "schedule": {"lr": "inverse_sqrt", "warmup_tokens": 10, "cooldown_tokens": 5,
                                              "weight_decay": "cosine", "weight_decay_end": 0.2}})
    lr, wd = schedules_for(cfg, 100)
    assert (lr.kind, lr.cooldown, lr.total, wd.start, wd.end) == ("inverse_sqrt", 5, 100, 0.05, 0.2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


class _NaNAt(Trainer):
    """A trainer whose loss is NaN at the given (0-based) steps; records the weights around them."""

    nan_steps: tuple[int, ...] = ()

    def _forward(self, mod_dict):
        out = super()._forward(mod_dict)
        if self.state.step in self.nan_steps:
            out.loss = out.loss * float("nan")
        return out

    def step(self, batches):
        before = [p.detach().clone() for p in self.model.parameters()] if self.state.step in self.nan_steps else None
        stats = super().step(batches)
        if before is not None:
            self.unchanged = getattr(self, "unchanged", []) + [
                all(torch.equal(a, p.detach()) for a, p in zip(before, self.model.parameters()))]
        return stats


def _records(out):
    return [r for r in metrics.read(out / "metrics.jsonl") if r.get("split") != "val"]


def test_schedules_drive_the_optimizer_and_a_nan_step_is_skipped(tmp_path, stores):
    """A real 5-step run, inverse-sqrt LR with cool-down and a linear weight-decay schedule, NaN loss at step
    3: every logged lr / weight_decay is the schedule's value at the tokens seen before that step and is what
    the optimizer's groups held (no-decay groups stay at 0); step 3 is skipped (no weight changes, counted
    in metrics and summary) and the run continues with finite weights and optimizer state."""
    cfg = TrainConfig.from_dict(base_config(
        tmp_path / "run", stores, max_steps=5, batch_size=2, clip_grad=None,
        optimizer={"lr": 2e-3, "min_lr": 1e-4, "weight_decay": 0.05},
        schedule={"lr": "inverse_sqrt", "warmup_tokens": 100, "cooldown_tokens": 150, "total_tokens": 480,
                  "weight_decay": "linear", "weight_decay_end": 0.01}))
    trainer = _NaNAt(cfg).build()
    trainer.nan_steps = (2,)
    groups = []
    orig = trainer._optimizer_step

    def spy():
        groups.append([(g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups])
        return orig()

    trainer._optimizer_step = spy
    summary = trainer.fit()
    recs = _records(tmp_path / "run")
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5]
    lr_s, wd_s = schedules_for(cfg, 480)
    seen = [0] + [r["tokens_seen"] for r in recs[:-1]]
    assert [r["lr"] for r in recs] == pytest.approx([lr_s(t) for t in seen])
    assert [r["weight_decay"] for r in recs] == pytest.approx([wd_s(t) for t in seen])
    assert len({r["lr"] for r in recs}) == 5  # warm-up, decay and cool-down: every step differs
    for r, g in zip(recs, groups):
        assert all(lr == pytest.approx(r["lr"]) for lr, _ in g)
        assert sorted({wd for _, wd in g}) == pytest.approx([0.0, r["weight_decay"]])
    assert [r["skipped"] for r in recs] == [False, False, True, False, False]
    assert [r["skipped_steps"] for r in recs] == [0, 0, 1, 1, 1]
    assert math.isnan(recs[2]["grad_norm"]) and all(math.isfinite(r["grad_norm"]) for r in recs[3:])
    assert trainer.unchanged == [True]
    assert summary["skipped_steps"] == 1 and trainer.state.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(torch.isfinite(v).all() for s in trainer.optimizer.state.values() for v in s.values()
               if torch.is_tensor(v))


def test_too_many_skipped_steps_in_a_row_stop_the_run(tmp_path, stores):
    cfg = TrainConfig.from_dict(base_config(tmp_path / "div", stores, max_steps=5, batch_size=2,
                                            max_skipped_in_a_row=2))
    trainer = _NaNAt(cfg).build()
    trainer.nan_steps = (0, 1, 2, 3, 4)
    with pytest.raises(TrainConfigError, match="step 2: 2 optimizer steps in a row were skipped .*diverged"):
        trainer.fit()
