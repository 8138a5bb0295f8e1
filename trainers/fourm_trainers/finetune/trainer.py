"""The fine-tuning loop: :class:`FineTuner` (``build`` → ``resume`` → ``fit``) and :func:`finetune`.

Runs under Hugging Face Accelerate exactly like ``fourm train`` (the same Accelerator setup, checkpoint folders
``checkpoints/step_N`` + ``checkpoints/latest``, SIGTERM/SIGINT handling and ``metrics.jsonl``): single process,
``accelerate launch`` / ``torchrun``, bf16 / fp16 mixed precision. Exact resume: the data order and crops are
a pure function of (seed, epoch), the position in it is saved, and each step's input dropout uses a
generator seeded by (seed, step, rank).

Outputs under ``out_dir``: ``config.yaml``, ``metrics.jsonl`` (``step``, ``lr``, ``loss``; validation lines
carry ``"split": "val"`` with ``loss`` and ``accuracy`` or the target plugin's metrics), ``checkpoints/``,
``final/`` (``transfer.safetensors``: backbone + head, ``finetune.yaml``, loadable with
:func:`fourm_trainers.finetune.load_finetuned`) and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..train import build as train_build
from ..train import checkpointing, metrics
from .config import FinetuneConfig
from .model import (build_backbone, build_transfer_model, class_confusion, confusion_figures, predictions_to_raw,
                    task_loss)
from .setup import make_data

log = logging.getLogger(__name__)


def _seed_for(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 15_485_863) % (2**63 - 1)


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``min_lr`` at ``total`` steps."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class FineTuner:
    """One fine-tuning run of ``cfg``; progress lives in :attr:`state` (saved with every checkpoint)."""

    def __init__(self, cfg: FinetuneConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.checkpoints = self.out / "checkpoints"
        self.metrics_path = self.out / "metrics.jsonl"
        self.state = checkpointing.TrainState()
        self.last_val: dict[str, float] = {}

    def build(self) -> FineTuner:
        """The Accelerator, the backbone + head, the data and the optimizer (prepared by Accelerate)."""
        cfg = self.cfg
        self.acc, self.cpu, self.mixed_precision = train_build.make_accelerator(cfg)
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        backbone = build_backbone(cfg)
        self.data = make_data(cfg, backbone.modalities, world=self.world, rank=self.rank)
        model = build_transfer_model(cfg, backbone, self.data)
        self.spec = self.data.info
        from fourm_core.backbone import layer_decay_groups

        groups = layer_decay_groups(model, weight_decay=cfg.optimizer.weight_decay,
                                    layer_decay=cfg.optimizer.layer_decay)
        o = cfg.optimizer
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps,
                                **({"foreach": True} if self.cpu else {"fused": True}))
        self.model, self.optimizer = self.acc.prepare(model, opt)
        self.acc.register_for_checkpointing(self.state)
        return self

    def resume(self) -> None:
        checkpointing.load_latest(self.acc, self.checkpoints)
        log.info("resumed from step %d", self.state.step)

    def save_checkpoint(self) -> None:
        checkpointing.save_checkpoint(self.acc, self.checkpoints, self.state.step)

    # ------------------------------------------------------------------ steps
    def batches(self):
        st, sampler = self.state, self.data.train_sampler
        while True:
            sampler.epoch, sampler.position = st.epoch, st.position
            for batch in self.data.loader(train=True):
                st.position += int(batch[2].shape[0])
                yield batch
            st.epoch, st.position = st.epoch + 1, 0

    def _drop_inputs(self, present: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """Input dropout of the extra inputs (MultiMAE-style): each is absent with its probability."""
        if not self.cfg.input_dropout:
            return present
        g = torch.Generator().manual_seed(_seed_for(self.cfg.seed, self.state.step, self.rank))
        out = dict(present)
        for name in sorted(self.cfg.input_dropout):
            p = float(self.cfg.input_dropout[name])
            if name in out:
                out[name] = out[name] & (torch.rand(batch, generator=g) >= p)
        return out

    def step(self, batches) -> tuple[float, float]:
        cfg, st, acc = self.cfg, self.state, self.acc
        lr = lr_at(st.step, lr=cfg.optimizer.lr, min_lr=cfg.optimizer.min_lr, warmup=cfg.warmup_steps,
                   total=cfg.max_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        inputs, present, target = next(batches)
        present = self._drop_inputs(present, int(target.shape[0]))
        dev = acc.device
        inputs = {k: v.to(dev) for k, v in inputs.items()}
        present = {k: v.to(dev) for k, v in present.items()}
        with acc.autocast():
            pred = self.model(inputs, present)
        loss = task_loss(cfg, self.spec, pred, target.to(dev))
        acc.backward(loss)
        if cfg.clip_grad is not None:
            acc.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean = acc.reduce(loss.detach().reshape(1), reduction="mean")
        st.step += 1
        return lr, float(mean)

    def evaluate(self) -> dict[str, float]:
        """Validation ``loss`` and ``accuracy`` (classification) or, for dense tasks, ``pixel_accuracy`` and
        ``miou`` (class maps) and the target plugin's metrics when it has some, over the whole validation set."""
        cfg, acc, model = self.cfg, self.acc, self.model
        if self.data.val is None:
            return {}
        model.eval()
        metric = self.data.new_metric()
        sums = torch.zeros(3, dtype=torch.float64, device=acc.device)  # loss·n, correct, n
        k = self.spec.out_channels
        confusion = (torch.zeros(k, k, dtype=torch.float64, device=acc.device)
                     if cfg.task.type == "dense" and self.spec.loss == "cross_entropy" else None)
        with torch.no_grad():
            for inputs, present, target in self.data.loader(train=False):
                dev = acc.device
                target = target.to(dev)
                with acc.autocast():
                    pred = model({k: v.to(dev) for k, v in inputs.items()}, {k: v.to(dev) for k, v in present.items()})
                n = target.shape[0]
                sums[0] += float(task_loss(cfg, self.spec, pred, target)) * n
                sums[2] += n
                if cfg.task.type == "classification":
                    sums[1] += float((pred.argmax(1) == target).sum())
                else:
                    if confusion is not None:
                        confusion += class_confusion(pred, target, k, self.spec.ignore_index)
                    if metric is not None:
                        preds, refs = predictions_to_raw(cfg, self.spec, pred, target)
                        metric.update(preds, refs)
        model.train()
        sums = acc.reduce(sums, reduction="sum")
        res = {"loss": float(sums[0] / sums[2].clamp_min(1))}
        if cfg.task.type == "classification":
            res["accuracy"] = float(sums[1] / sums[2].clamp_min(1))
        if confusion is not None:
            res.update(confusion_figures(acc.reduce(confusion, reduction="sum")))
        elif metric is not None:  # per-process totals (a single process gives the exact figures)
            res.update({k: float(v) for k, v in metric.compute().items()})
        return res

    # ------------------------------------------------------------------ the run
    def _record(self, rec: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            metrics.append(self.metrics_path, rec)
            if self.cfg.tracker:
                prefix = "val/" if rec.get("split") == "val" else ""
                self.acc.log({prefix + k: v for k, v in rec.items() if k not in ("step", "split")}, step=rec["step"])

    def fit(self, *, stop_after: int | None = None) -> dict[str, Any]:
        cfg, st, acc = self.cfg, self.state, self.acc
        if acc.is_main_process:
            import yaml

            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            metrics.truncate(self.metrics_path, st.step)
            if cfg.tracker:
                acc.init_trackers("fourm-finetune", config={"lr": cfg.optimizer.lr, "max_steps": cfg.max_steps})
        acc.wait_for_everyone()
        batches = self.batches()
        self.model.train()
        t0, run, stopped_by = time.perf_counter(), 0, None
        with checkpointing.StopOnSignal() as stop:
            while st.step < cfg.max_steps:
                lr, loss = self.step(batches)
                run += 1
                if st.step % cfg.log_every == 0:
                    self._record({"step": st.step, "lr": lr, "loss": loss})
                if cfg.eval_every and self.data.val is not None and (st.step % cfg.eval_every == 0
                                                                     or st.step == cfg.max_steps):
                    self.last_val = self.evaluate()
                    self._record({"split": "val", "step": st.step, **self.last_val})
                saved = bool(cfg.save_every and st.step % cfg.save_every == 0)
                if saved:
                    self.save_checkpoint()
                if stop.signal is not None or (stop_after is not None and run >= stop_after):
                    stopped_by = f"signal {stop.signal}" if stop.signal is not None else f"stop_after={stop_after}"
                    if not saved:
                        self.save_checkpoint()
                    break
        if stopped_by is None and not self.last_val and self.data.val is not None:
            self.last_val = self.evaluate()
            self._record({"split": "val", "step": st.step, **self.last_val})
        elapsed = time.perf_counter() - t0
        summary = {"step": st.step, "steps_per_s": run / max(elapsed, 1e-9), "stopped_by": stopped_by,
                   "val": self.last_val, "num_processes": self.world, "device": str(acc.device),
                   "mixed_precision": self.mixed_precision}
        if stopped_by is None:
            acc.wait_for_everyone()
            if acc.is_main_process:
                from .model import save_finetuned

                final = self.out / "final"
                save_finetuned(acc.unwrap_model(self.model), cfg, self.data, final)
                summary["final"] = str(final)
                (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        if cfg.tracker:
            acc.end_training()
        return summary


def finetune(cfg: FinetuneConfig, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Fine-tune per ``cfg``; ``resume`` continues from ``out_dir/checkpoints/latest``; ``stop_after`` saves a
    checkpoint and returns after that many steps (as a kill would). Returns the summary."""
    tuner = FineTuner(cfg).build()
    if resume:
        tuner.resume()
    return tuner.fit(stop_after=stop_after)
