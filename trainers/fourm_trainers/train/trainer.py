"""The training loop: :class:`Trainer` (``build`` → ``resume`` → ``fit``, which runs ``step`` / ``evaluate`` /
``save_checkpoint``) and :func:`train`, the one-call form."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch

from ..config import TrainConfig, TrainConfigError
from . import build, checkpointing, distributed, metrics, schedules

log = logging.getLogger(__name__)

#: one micro-batch as the collate function gives it: per-modality tensors, their presence masks, and each
#: sample's dataset number (``None`` when no dataset has its own masking)
Batch = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], "torch.Tensor | None"]


def _seed_for(seed: int, step: int, micro: int, rank: int) -> int:
    """The seed of the masking generator of one micro-batch on one process."""
    return (seed * 1_000_003 + step * 7_919 + micro * 104_729 + rank * 15_485_863) % (2**63 - 1)


def _count_tokens(mod_dict: dict[str, dict[str, torch.Tensor]]) -> int:
    return int(sum(int((~v["input_mask"]).sum()) + int((~v["target_mask"]).sum()) for v in mod_dict.values()))


def _to(mod_dict: dict[str, dict[str, torch.Tensor]], device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    return {m: {k: t.to(device, non_blocking=True) for k, t in d.items()} for m, d in mod_dict.items()}


@attrs.frozen
class StepStats:
    """What one optimizer step measured."""

    lr: float
    #: the weight decay of the decaying parameter groups
    weight_decay: float
    #: this process's loss, averaged over the micro-batches
    loss: float
    #: the loss averaged over the processes
    mean_loss: float
    #: the gradient norm before clipping (NaN when ``clip_grad`` is off)
    grad_norm: float
    #: tokens (inputs + targets) of the step, all processes
    tokens: int
    #: per modality (sorted): the mean loss over this process's micro-batches with targets of it
    losses: dict[str, float]
    #: the optimizer step was skipped (non-finite gradient norm, or above ``skip_grad_norm``)
    skipped: bool = False


class Trainer:
    """One training run of ``cfg``. Its progress (step, tokens seen, data position) is :attr:`state`, saved and
    restored with the model, optimizer and RNG states by every checkpoint; each micro-batch's masks come from a
    generator seeded by (seed, step, micro-batch, rank), so a resumed run repeats an uninterrupted one."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.checkpoints = self.out / "checkpoints"
        self.metrics_path = self.out / "metrics.jsonl"
        self.state = checkpointing.TrainState()
        self.do_eval = bool(cfg.eval_every and cfg.val_datasets)
        self.last_val: dict[str, float] = {}
        # set by build()
        self.acc: Any = None
        self.cpu = False
        self.mixed_precision = "no"
        self.rank, self.world = 0, 1
        self.modalities: Any = None
        self.masker: Any = None
        self.val_masker: Any = None
        self.num_encoder_tokens = self.num_decoder_tokens = 0
        self.model: Any = None
        self.optimizer: Any = None
        self.dataset: Any = None
        self.sampler: Any = None
        self.total_tokens = 0
        self.lr_schedule: Any = None
        self.wd_schedule: Any = None
        #: indices of the optimizer's parameter groups that decay (the weight-decay schedule sets them)
        self.decay_groups: list[int] = []
        self.skipped_in_a_row = 0
        # set when validation data is first needed (see _build_val)
        self.val_dataset: Any = None
        self.val_sampler: Any = None

    # ------------------------------------------------------------------------------------------------ build

    def build(self) -> Trainer:
        """The Accelerator, modalities, model, masker, training data and optimizer (prepared by Accelerate: under
        FSDP2 / DeepSpeed together, under FSDP1 the optimizer is built over the wrapped model)."""
        cfg = self.cfg
        self.acc, self.cpu, self.mixed_precision = build.make_accelerator(cfg)
        acc = self.acc
        self.rank, self.world = acc.process_index, acc.num_processes
        modalities = build.discover_modalities([d.path for d in cfg.datasets], cfg.modalities)
        sizes, text = build.vocab_sizes(cfg, modalities)
        model = build.build_or_load_model(cfg, modalities, sizes)
        self.modalities = model.modalities
        self.masker = build.make_masker(cfg, cfg.datasets, self.modalities, text)
        maskers = [self.masker]
        if cfg.val_datasets:
            self.val_masker = build.make_masker(cfg, cfg.val_datasets, self.modalities, text)
            maskers.append(self.val_masker)
        # one encoder / decoder length for training and validation, the largest any dataset's masking needs
        self.num_encoder_tokens = max(m.num_encoder_tokens for m in maskers)
        self.num_decoder_tokens = max(m.num_decoder_tokens for m in maskers)
        if cfg.activation_checkpointing:
            build.enable_activation_checkpointing(model)
        self.dataset, self.sampler = build.train_data(cfg, self.modalities, world=self.world, rank=self.rank)
        self.model, self.optimizer = distributed.prepare(acc, model, lambda m: build.make_optimizer(m, cfg, cpu=self.cpu),
                                                         cfg)
        self.decay_groups = [i for i, g in enumerate(self.optimizer.param_groups) if g.get("weight_decay", 0) > 0]
        acc.register_for_checkpointing(self.state)
        mc = self.masker.config
        nominal = (mc.input_tokens[1] + (mc.target_tokens or (0, self.num_decoder_tokens))[1]) * cfg.batch_size \
            * cfg.grad_accum * self.world
        self.total_tokens = cfg.schedule.total_tokens or cfg.max_steps * nominal
        self.lr_schedule, self.wd_schedule = schedules.schedules_for(cfg, self.total_tokens)
        return self

    def _build_val(self) -> None:
        if not self.cfg.val_datasets:
            raise TrainConfigError("evaluate: the train config has no val_datasets; add `val_datasets: [{path: STORE}]`")
        self.val_dataset, self.val_sampler = build.val_data(self.cfg, self.modalities, world=self.world, rank=self.rank)

    # ------------------------------------------------------------------------------------------------ checkpoints

    def resume(self) -> None:
        """Continue from ``out_dir/checkpoints/latest`` (call after :meth:`build`)."""
        checkpointing.load_latest(self.acc, self.checkpoints)
        log.info("resumed from step %d (%d tokens seen)", self.state.step, self.state.tokens_seen)

    def save_checkpoint(self) -> None:
        """``checkpoints/step_<step>`` and ``checkpoints/latest`` (every process takes part)."""
        checkpointing.save_checkpoint(self.acc, self.checkpoints, self.state.step)

    # ------------------------------------------------------------------------------------------------ steps

    def batches(self) -> Iterator[Batch]:
        """Training micro-batches from the saved data position on, epoch after epoch; taking one advances the
        position in :attr:`state`."""
        cfg, st = self.cfg, self.state
        while True:
            self.sampler.load_state_dict({"epoch": st.epoch, "position": st.position, "seed": cfg.seed})
            for item in build.make_loader(self.dataset, self.sampler, cfg.batch_size, cfg.num_workers):
                st.position += item["tensors"][next(iter(item["tensors"]))].shape[0]
                yield item["tensors"], item["present"], item.get("source")
            st.epoch, st.position = st.epoch + 1, 0

    def _forward(self, mod_dict: dict[str, dict[str, torch.Tensor]]) -> Any:
        return self.model(mod_dict, num_encoder_tokens=self.num_encoder_tokens,
                          num_decoder_tokens=self.num_decoder_tokens, loss_type=self.cfg.loss_type)

    def step(self, batches: Iterator[Batch]) -> StepStats:
        """One optimizer step over ``grad_accum`` micro-batches taken from ``batches``; advances :attr:`state`.
        A step whose gradient norm is not finite (or reaches ``skip_grad_norm``) updates nothing but is counted
        (``state.skipped_steps``); ``max_skipped_in_a_row`` such steps in a row stop the run with an error."""
        cfg, st, acc, model = self.cfg, self.state, self.acc, self.model
        frozen = st.step < cfg.freeze_trunk_steps
        lr, wd = self.lr_schedule(st.tokens_seen), self.wd_schedule(st.tokens_seen)
        for i, g in enumerate(self.optimizer.param_groups):
            g["lr"] = 0.0 if (frozen and g.get("trunk")) else lr
            if i in self.decay_groups:
                g["weight_decay"] = wd
        loss_sum = 0.0
        mod_sums: dict[str, list[float]] = {}
        step_tokens = 0
        for micro in range(cfg.grad_accum):
            tensors, present, source = next(batches)
            gen = torch.Generator().manual_seed(_seed_for(cfg.seed, st.step, micro, self.rank))
            md = self.masker(tensors, present=present, generator=gen, source=source)
            step_tokens += _count_tokens(md)
            md = _to(md, acc.device)
            sync = micro == cfg.grad_accum - 1
            with acc.no_sync(model) if not sync and self.world > 1 else contextlib.nullcontext():
                with acc.autocast():
                    o = self._forward(md)
                acc.backward(o.loss / cfg.grad_accum)
            loss_sum += float(o.loss.detach()) / cfg.grad_accum
            for m, l in o.losses.items():
                if o.num_targets[m] > 0:
                    mod_sums.setdefault(m, []).append(float(l.detach()))
        grad_norm, skipped = self._optimizer_step()
        counts = torch.tensor([step_tokens, loss_sum], device=acc.device, dtype=torch.float64)
        counts = acc.reduce(counts, reduction="sum")
        st.tokens_seen += int(counts[0])
        st.step += 1
        return StepStats(lr=lr, weight_decay=wd, loss=loss_sum, mean_loss=float(counts[1]) / self.world,
                         grad_norm=grad_norm, tokens=int(counts[0]), skipped=skipped,
                         losses={m: sum(v) / len(v) for m, v in sorted(mod_sums.items())})

    def _optimizer_step(self) -> tuple[float, bool]:
        """Clip, check and apply the accumulated gradients; returns (gradient norm, skipped). The norm is the
        same on every process (gradients are reduced first), so all of them skip together."""
        cfg, st, acc = self.cfg, self.state, self.acc
        guard = cfg.skip_nonfinite or cfg.skip_grad_norm is not None
        max_norm = cfg.clip_grad if cfg.clip_grad is not None else (float("inf") if guard else None)
        norm = acc.clip_grad_norm_(self.model.parameters(), max_norm) if max_norm is not None else None
        grad_norm = float("nan") if norm is None else distributed.scalar(norm)
        nonfinite = norm is not None and not torch.isfinite(torch.as_tensor(grad_norm))
        too_big = cfg.skip_grad_norm is not None and not nonfinite and grad_norm >= cfg.skip_grad_norm
        if distributed.uses_deepspeed(acc):
            # the engine stepped inside the last backward (its own overflow checks); count what it saw
            skipped = nonfinite
        elif self.mixed_precision == "fp16" and not too_big:
            # the loss scaler skips steps with inf/NaN gradients itself (and lowers its scale): let it
            self.optimizer.step()
            skipped = bool(acc.optimizer_step_was_skipped)
        elif too_big or (nonfinite and cfg.skip_nonfinite):
            skipped = True
        else:
            self.optimizer.step()
            skipped = False
        self.optimizer.zero_grad(set_to_none=True)
        if skipped:
            st.skipped_steps += 1
            self.skipped_in_a_row += 1
            log.warning("step %d: gradient norm %s, optimizer step skipped (%d skipped so far)", st.step + 1,
                        grad_norm, st.skipped_steps)
            if cfg.max_skipped_in_a_row and self.skipped_in_a_row >= cfg.max_skipped_in_a_row:
                raise TrainConfigError(
                    f"step {st.step + 1}: {self.skipped_in_a_row} optimizer steps in a row were skipped (gradient "
                    f"norm {grad_norm}); the run has diverged. Resume from an earlier checkpoint with a lower "
                    f"optimizer.lr, a longer schedule.warmup_tokens or clip_grad, or raise max_skipped_in_a_row")
        else:
            self.skipped_in_a_row = 0
        return grad_norm, skipped

    def evaluate(self) -> dict[str, float]:
        """Validation losses over ``eval_batches`` batches (the same batches and masks every time): ``loss/<m>``
        weighted by targets and summed over processes, and ``loss``, their mean."""
        cfg, acc, model = self.cfg, self.acc, self.model
        if self.val_dataset is None:
            self._build_val()
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        # the same batches and masks at every evaluation: restart the validation order from its beginning
        self.val_sampler.load_state_dict({"epoch": 0, "position": 0, "seed": cfg.seed})
        with torch.no_grad():
            for i, item in enumerate(build.make_loader(self.val_dataset, self.val_sampler, cfg.batch_size,
                                                       cfg.num_workers)):
                if i >= cfg.eval_batches:
                    break
                gen = torch.Generator().manual_seed(_seed_for(cfg.seed + 1, 0, i, self.rank))  # same masks every eval
                md = _to(self.val_masker(item["tensors"], present=item["present"], generator=gen,
                                         source=item.get("source")), acc.device)
                with acc.autocast():
                    o = self._forward(md)
                for m, l in o.losses.items():
                    c = o.num_targets[m]
                    s = sums.setdefault(m, torch.zeros(2, device=acc.device, dtype=torch.float64))
                    s += torch.tensor([float(l) * c, c], device=acc.device, dtype=torch.float64)
        model.train()
        res: dict[str, float] = {}
        for m in sorted(sums):
            s = acc.reduce(sums[m], reduction="sum")
            if s[1] > 0:
                res[f"loss/{m}"] = float(s[0] / s[1])
        per = list(res.values())
        res["loss"] = sum(per) / len(per) if per else float("nan")
        return res

    # ------------------------------------------------------------------------------------------------ logging

    def _record(self, rec: dict[str, Any], tracked: dict[str, float]) -> None:
        """One ``metrics.jsonl`` line, and ``tracked`` to the trackers: by the main process only."""
        if self.acc.is_main_process:
            metrics.append(self.metrics_path, rec)
            if self.cfg.tracker:
                self.acc.log(tracked, step=self.state.step)

    def _log_step(self, stats: StepStats) -> None:
        st = self.state
        if st.step % self.cfg.log_every == 0:
            rec: dict[str, Any] = {"step": st.step, "tokens_seen": st.tokens_seen, "lr": stats.lr,
                                   "weight_decay": stats.weight_decay, "loss": stats.mean_loss,
                                   "grad_norm": stats.grad_norm, "skipped": stats.skipped,
                                   "skipped_steps": st.skipped_steps}
            rec.update({f"loss/{m}": v for m, v in stats.losses.items()})
            self._record(rec, {k: v for k, v in rec.items() if k != "step"})

    def _evaluate_and_log(self) -> None:
        st = self.state
        self.last_val = self.evaluate()
        self._record({"split": "val", "step": st.step, "tokens_seen": st.tokens_seen, **self.last_val},
                     {f"val/{k}": v for k, v in self.last_val.items()})

    # ------------------------------------------------------------------------------------------------ the run

    def _open_run(self) -> None:
        """The resolved ``config.yaml``, ``metrics.jsonl`` cut back to the current step, the trackers; then the
        validation data."""
        cfg, acc = self.cfg, self.acc
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            import yaml

            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            metrics.truncate(self.metrics_path, self.state.step)
            if cfg.tracker:
                acc.init_trackers("fourm", config={"batch_size": cfg.batch_size, "lr": cfg.optimizer.lr,
                                                   "max_steps": cfg.max_steps})
        acc.wait_for_everyone()
        if self.do_eval:
            self._build_val()

    def _progress_bar(self) -> Any:
        if not self.acc.is_main_process:
            return None
        from fourm_core.data.jobkit import progress_bar

        return progress_bar(self.cfg.max_steps, "train", unit="step", initial=self.state.step)

    def fit(self, *, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``max_steps`` (evaluating every ``eval_every`` steps and at the end, saving every
        ``save_every``), then save ``final/`` and ``summary.json``. SIGTERM/SIGINT, or ``stop_after`` steps of
        this call, save a checkpoint and return early instead (no final model). Returns the summary."""
        cfg, st, acc = self.cfg, self.state, self.acc
        self._open_run()
        batches = self.batches()
        pbar = self._progress_bar()
        self.model.train()
        t_start, steps_run, tokens_run = time.perf_counter(), 0, 0
        self.last_val = {}
        stopped_by = None
        with checkpointing.StopOnSignal() as stop:
            while st.step < cfg.max_steps:
                stats = self.step(batches)
                steps_run += 1
                tokens_run += stats.tokens
                self._log_step(stats)
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{stats.loss:.3f}", lr=f"{stats.lr:.2e}")
                if self.do_eval and (st.step % cfg.eval_every == 0 or st.step == cfg.max_steps):
                    self._evaluate_and_log()
                saved = bool(cfg.save_every and st.step % cfg.save_every == 0)
                if saved:
                    self.save_checkpoint()
                if stop.signal is not None or (stop_after is not None and steps_run >= stop_after):
                    stopped_by = f"signal {stop.signal}" if stop.signal is not None else f"stop_after={stop_after}"
                    if not saved:
                        self.save_checkpoint()
                    break
        elapsed = time.perf_counter() - t_start
        if pbar is not None:
            pbar.close()
        summary = {"step": st.step, "tokens_seen": st.tokens_seen, "skipped_steps": st.skipped_steps,
                   "steps_per_s": steps_run / max(elapsed, 1e-9),
                   "tokens_per_s": tokens_run / max(elapsed, 1e-9), "stopped_by": stopped_by, "val": self.last_val,
                   "num_processes": self.world, "device": str(acc.device), "mixed_precision": self.mixed_precision}
        if stopped_by is None:
            self._finish(summary)
        if cfg.tracker:
            acc.end_training()
        return summary

    def _finish(self, summary: dict[str, Any]) -> None:
        """``final/`` (the model, gathered from every process when sharded, and the tokenizers) and
        ``summary.json``, written by the main process."""
        acc = self.acc
        acc.wait_for_everyone()
        final = self.out / "final"
        checkpointing.save_final(acc, self.model, final, self.cfg.tokenizers)  # every process: gathers shards
        if acc.is_main_process:
            summary["final"] = str(final)
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or fine-tune) per ``cfg``. ``resume`` continues from ``out_dir/checkpoints/latest``;
    ``stop_after`` saves a checkpoint and returns after that many steps (as a kill would). Returns a summary."""
    trainer = Trainer(cfg).build()
    if resume:
        trainer.resume()
    return trainer.fit(stop_after=stop_after)
