"""4M training and fine-tuning under Hugging Face Accelerate.

::

    python -m fourm_trainers.train --config cfg.yaml [--resume] [--set key=value ...]
    accelerate launch -m fourm_trainers.train --config cfg.yaml
    torchrun --nproc_per_node 2 -m fourm_trainers.train --config cfg.yaml
    fourm train --config cfg.yaml

Outputs under ``out_dir``: ``metrics.jsonl`` (one JSON object per logged step: ``step``, ``tokens_seen``,
``lr``, ``loss``, ``loss/<modality>``; validation lines carry ``"split": "val"``), ``checkpoints/step_N``
(``accelerator.save_state``: model, optimizer, RNG, and the training state: step, tokens seen, data position),
``checkpoints/latest`` (name of the newest one), ``config.yaml`` (the resolved config), ``final/`` (the model via
``save_pretrained`` plus ``final/tokenizers/`` copied from the config's tokenizer directory), TensorBoard logs
when ``tracker: tensorboard``.

Exact resume: the data order is a pure function of (seed, epoch) (:class:`fourm_core.data.FourMSampler`), the
position in it is saved, and each step's masking uses a generator seeded by (seed, step, micro-batch, rank), so
a single-process run stopped and resumed logs the same losses as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig, TrainConfigError

log = logging.getLogger(__name__)

#: substrings of parameter names that get no weight decay (besides every 1-D parameter: norms and biases)
NO_DECAY_KEYS = ("token_emb", "pos_emb", "mod_emb", "mask_token", "register", "norm")
#: prefixes of the "embedding" parameters that stay trainable while the trunk is frozen
EMBEDDING_PREFIXES = ("encoder_embeddings.", "decoder_embeddings.")


class TrainState:
    """What ``save_state`` stores besides model/optimizer/RNG: progress and the data position."""

    def __init__(self) -> None:
        self.step = 0
        self.tokens_seen = 0
        self.epoch = 0
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "tokens_seen": self.tokens_seen, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


# ----------------------------------------------------------------------------------------------------------
# pieces (public so tests and other jobs can reuse them)
# ----------------------------------------------------------------------------------------------------------


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay / no decay (norms, biases, embeddings, positions) × trunk / embeddings."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:  # tied parameters appear once
            continue
        seen.add(id(p))
        no_decay = p.ndim < 2 or any(k in name for k in NO_DECAY_KEYS) or name.endswith(".bias")
        trunk = not name.startswith(EMBEDDING_PREFIXES)
        groups.setdefault((no_decay, trunk), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if nd else weight_decay, "trunk": trunk}
            for (nd, trunk), ps in sorted(groups.items())]


def lr_at(tokens: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` tokens, then cosine from ``lr`` to ``min_lr`` at ``total`` tokens."""
    if warmup > 0 and tokens < warmup:
        return lr * tokens / warmup
    if total <= warmup:
        return lr
    progress = min(1.0, (tokens - warmup) / (total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def enable_activation_checkpointing(model: torch.nn.Module) -> int:
    """Recompute every encoder/decoder block in the backward pass (trades compute for memory)."""
    from torch.utils.checkpoint import checkpoint

    n = 0
    for blocks in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        for blk in blocks or ():
            inner = blk.forward

            def fwd(*args: Any, _inner=inner, **kwargs: Any) -> Any:
                if torch.is_grad_enabled():
                    return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
                return _inner(*args, **kwargs)

            blk.forward = fwd
            n += 1
    return n


def discover_modalities(datasets: Sequence[str], requested: Sequence[str] | None) -> Any:
    """The modalities to train: the requested ones, or every installed one with tokens (or, for ``pixels``,
    raw images) in at least one dataset. Unknown names raise listing the installed ones."""
    from fourm_core.data import Store
    from fourm_registry import get_modalities

    installed = get_modalities()
    if requested is not None:
        try:
            return installed.subset(requested)
        except KeyError as exc:
            raise TrainConfigError(f"train config: modalities: {exc}") from None
    found = []
    for spec in installed.specs:
        for url in datasets:
            store = Store.open(url, "r")
            if spec.kind in ("image", "vector", "sequence") and store.has(spec.name, "tokens"):
                found.append(spec.name)
                break
            if spec.kind in ("pixels", "embedding_sequence") and store.has(spec.source or spec.name, "raw"):
                found.append(spec.name)
                break
    if not found:
        raise TrainConfigError(
            f"no installed modality has tokens in the datasets {list(datasets)}; tokenize them first "
            f"(`fourm tokenize STORE --modalities ...`) or install the plugins (installed: {', '.join(installed.names)})")
    return installed.subset(found)


def _vocab_sizes(cfg: TrainConfig, modalities: Any) -> tuple[dict[str, int], Any]:
    """Vocabulary sizes (sequences: the text tokenizer's) and the masker's TextVocabInfo."""
    from fourm_core.masking import TextVocabInfo

    sizes = dict(cfg.vocab_sizes)
    text = TextVocabInfo()
    if cfg.tokenizers:
        root = Path(cfg.tokenizers)
        if not root.is_dir():
            raise TrainConfigError(f"tokenizers: directory {root} does not exist (the directory given to "
                                   f"`fourm train-tokenizer --out` / `fourm tokenize --tokenizers`)")
        path = root / "text" / "tokenizer.json"
        has_sequences = any(s.kind == "sequence" for s in modalities.specs)
        if has_sequences and not path.exists():
            names = ", ".join(s.name for s in modalities.specs if s.kind == "sequence")
            raise TrainConfigError(f"tokenizers: {path} is missing but the sequence modalities {names} need the text "
                                   f"vocabulary; run `fourm train-tokenizer --modality text --data STORE --out {root}`")
        missing = [s.name for s in modalities.specs
                   if s.kind in ("image", "vector") and not (root / s.name / "config.json").exists()]
        if missing:
            log.warning("tokenizers: %s has no tokenizer for %s; the final model will not decode them "
                        "(train them with `fourm train-tokenizer --modality NAME --out %s`)", root, ", ".join(missing), root)
        if path.exists() and has_sequences:
            from fourm_core.tokenizers.text import TextTokenizer

            tok = TextTokenizer.load(path)
            text = TextVocabInfo.from_tokenizer(tok.backend, name=str(path))
            for s in modalities.specs:
                if s.kind == "sequence":
                    sizes.setdefault(s.name, tok.vocab_size)
    return sizes, text


def build_or_load_model(cfg: TrainConfig, modalities: Any, vocab_sizes: dict[str, int]) -> Any:
    """A fresh model, or a pretrained one extended with the modalities it does not know (new tables, the
    existing weights kept)."""
    from fourm_core.model import FourM, ModelConfig, build_model

    if cfg.init_from is None:
        return build_model(modalities, dict(cfg.model), vocab_sizes=vocab_sizes)
    if cfg.init_format == "ml4m":
        from fourm_core.compat.ml4m import load_ml4m_checkpoint

        base = load_ml4m_checkpoint(cfg.init_from, cfg.init_ml4m_config)
    else:
        base = FourM.from_pretrained(cfg.init_from)
    known = set(base.modalities.names)
    new = [n for n in modalities.names if n not in known]
    if not new:
        return base
    specs = list(base.modalities.specs) + [modalities[n] for n in new]
    from fourm_registry import ModalitySet

    sizes = {**dict(base.vocab_sizes), **{k: v for k, v in vocab_sizes.items() if k in new}}
    model = FourM(ModalitySet(specs), ModelConfig.coerce(base.config), vocab_sizes=sizes)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected:
        raise TrainConfigError(f"internal: pretrained keys {unexpected[:5]} do not fit the extended model")
    log.info("fine-tuning %s: added modalities %s (%d new tensors)", cfg.init_from, new, len(missing))
    return model


def _loader(dataset: Any, sampler: Any, batch_size: int, num_workers: int) -> Any:
    from fourm_core.data import FourMCollate

    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       collate_fn=FourMCollate(None, dataset.modalities),
                                       persistent_workers=False)


def _seed_for(seed: int, step: int, micro: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + micro * 104_729 + rank * 15_485_863) % (2**63 - 1)


def _count_tokens(mod_dict: dict[str, dict[str, torch.Tensor]]) -> int:
    return int(sum(int((~v["input_mask"]).sum()) + int((~v["target_mask"]).sum()) for v in mod_dict.values()))


def _to(mod_dict: dict[str, dict[str, torch.Tensor]], device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    return {m: {k: t.to(device, non_blocking=True) for k, t in d.items()} for m, d in mod_dict.items()}


class _Stop:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or fine-tune) per ``cfg``. ``resume`` continues from ``out_dir/checkpoints/latest``;
    ``stop_after`` saves a checkpoint and returns after that many steps (as a kill would). Returns a summary."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed

    from fourm_core.data import FourMDataset, FourMSampler
    from fourm_core.masking import Masker, MaskingConfig

    out = Path(cfg.out_dir)
    ckpt_root = out / "checkpoints"
    cpu = cfg.cpu or not torch.cuda.is_available()
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    # a batch need not touch every modality's tables (no targets of it), so DDP must allow unused parameters
    acc = Accelerator(cpu=cpu, mixed_precision=mp, log_with=cfg.tracker,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
                      project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    set_seed(cfg.seed)
    rank, world = acc.process_index, acc.num_processes

    modalities = discover_modalities([d.path for d in cfg.datasets], cfg.modalities)
    vocab_sizes, text = _vocab_sizes(cfg, modalities)
    model = build_or_load_model(cfg, modalities, vocab_sizes)
    modalities = model.modalities
    masker = Masker(modalities, MaskingConfig.from_dict(cfg.masking), text=text)
    n_enc, n_dec = masker.num_encoder_tokens, masker.num_decoder_tokens
    if cfg.activation_checkpointing:
        enable_activation_checkpointing(model)

    weights = [d.weight for d in cfg.datasets]
    dataset = FourMDataset([d.path for d in cfg.datasets], weights=weights if len(weights) > 1 else None,
                           modalities=modalities, crop="random", seed=cfg.seed)
    sampler = FourMSampler(dataset, seed=cfg.seed, num_replicas=world, rank=rank)
    groups = param_groups(model, cfg.optimizer.weight_decay)
    opt_kwargs: dict[str, Any] = {"foreach": True} if cpu else {"fused": True}
    optimizer = torch.optim.AdamW(groups, lr=cfg.optimizer.lr, betas=cfg.optimizer.betas, eps=cfg.optimizer.eps,
                                  **opt_kwargs)
    model, optimizer = acc.prepare(model, optimizer)
    state = TrainState()
    acc.register_for_checkpointing(state)

    nominal = (masker.config.input_tokens[1] + (masker.config.target_tokens or (0, n_dec))[1]) * cfg.batch_size \
        * cfg.grad_accum * world
    total_tokens = cfg.schedule.total_tokens or cfg.max_steps * nominal

    if resume:
        latest = ckpt_root / "latest"
        if not latest.exists():
            raise TrainConfigError(f"--resume: no checkpoint in {ckpt_root} (no 'latest' file); run without --resume")
        acc.load_state(str(ckpt_root / latest.read_text().strip()))
        log.info("resumed from step %d (%d tokens seen)", state.step, state.tokens_seen)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        import yaml

        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        _truncate_metrics(out / "metrics.jsonl", state.step)
        if cfg.tracker:
            acc.init_trackers("fourm", config={"batch_size": cfg.batch_size, "lr": cfg.optimizer.lr,
                                               "max_steps": cfg.max_steps})
    acc.wait_for_everyone()

    def batches() -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
        while True:
            sampler.load_state_dict({"epoch": state.epoch, "position": state.position, "seed": cfg.seed})
            for item in _loader(dataset, sampler, cfg.batch_size, cfg.num_workers):
                state.position += item["tensors"][next(iter(item["tensors"]))].shape[0]
                yield item["tensors"], item["present"]
            state.epoch, state.position = state.epoch + 1, 0

    do_eval = False
    if cfg.eval_every and cfg.val_datasets:
        val_ds = FourMDataset([d.path for d in cfg.val_datasets], modalities=modalities, crop="center", seed=cfg.seed)
        val_sampler = FourMSampler(val_ds, shuffle=False, seed=cfg.seed, num_replicas=world, rank=rank)
        do_eval = True

    def evaluate() -> dict[str, float]:
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        # the same batches and masks at every evaluation: restart the validation order from its beginning
        val_sampler.load_state_dict({"epoch": 0, "position": 0, "seed": cfg.seed})
        with torch.no_grad():
            for i, item in enumerate(_loader(val_ds, val_sampler, cfg.batch_size, cfg.num_workers)):
                if i >= cfg.eval_batches:
                    break
                gen = torch.Generator().manual_seed(_seed_for(cfg.seed + 1, 0, i, rank))  # same masks every eval
                md = _to(masker(item["tensors"], present=item["present"], generator=gen), acc.device)
                with acc.autocast():
                    o = model(md, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec, loss_type=cfg.loss_type)
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
        per = [v for k, v in res.items()]
        res["loss"] = sum(per) / len(per) if per else float("nan")
        return res

    def save() -> None:
        name = f"step_{state.step}"
        acc.save_state(str(ckpt_root / name))
        if acc.is_main_process:
            (ckpt_root / "latest").write_text(name)
        acc.wait_for_everyone()

    metrics_path = out / "metrics.jsonl"
    it = batches()
    pbar = None
    if acc.is_main_process:
        from tqdm.auto import tqdm

        pbar = tqdm(total=cfg.max_steps, initial=state.step, desc="train", dynamic_ncols=True,
                    disable=not sys.stderr.isatty())
    model.train()
    t_start, steps_run, tokens_run = time.perf_counter(), 0, 0
    last_val: dict[str, float] = {}
    stopped_by = None
    with _Stop() as stop:
        while state.step < cfg.max_steps:
            frozen = state.step < cfg.freeze_trunk_steps
            lr = lr_at(state.tokens_seen, lr=cfg.optimizer.lr, min_lr=cfg.optimizer.min_lr,
                       warmup=cfg.schedule.warmup_tokens, total=total_tokens)
            for g in optimizer.param_groups:
                g["lr"] = 0.0 if (frozen and g.get("trunk")) else lr
            loss_sum = 0.0
            mod_sums: dict[str, list[float]] = {}
            step_tokens = 0
            for micro in range(cfg.grad_accum):
                tensors, present = next(it)
                gen = torch.Generator().manual_seed(_seed_for(cfg.seed, state.step, micro, rank))
                md = masker(tensors, present=present, generator=gen)
                step_tokens += _count_tokens(md)
                md = _to(md, acc.device)
                sync = micro == cfg.grad_accum - 1
                ctx = acc.no_sync(model) if not sync and world > 1 else _null()
                with ctx:
                    with acc.autocast():
                        o = model(md, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec, loss_type=cfg.loss_type)
                    acc.backward(o.loss / cfg.grad_accum)
                loss_sum += float(o.loss.detach()) / cfg.grad_accum
                for m, l in o.losses.items():
                    if o.num_targets[m] > 0:
                        mod_sums.setdefault(m, []).append(float(l.detach()))
            if cfg.clip_grad is not None:
                grad_norm = float(acc.clip_grad_norm_(model.parameters(), cfg.clip_grad))
            else:
                grad_norm = float("nan")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            counts = torch.tensor([step_tokens, loss_sum], device=acc.device, dtype=torch.float64)
            counts = acc.reduce(counts, reduction="sum")
            state.tokens_seen += int(counts[0])
            state.step += 1
            steps_run += 1
            tokens_run += int(counts[0])
            if acc.is_main_process and state.step % cfg.log_every == 0:
                rec: dict[str, Any] = {"step": state.step, "tokens_seen": state.tokens_seen, "lr": lr,
                                       "loss": float(counts[1]) / world, "grad_norm": grad_norm}
                rec.update({f"loss/{m}": sum(v) / len(v) for m, v in sorted(mod_sums.items())})
                _append(metrics_path, rec)
                if cfg.tracker:
                    acc.log({k: v for k, v in rec.items() if k != "step"}, step=state.step)
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}")
            if do_eval and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
                last_val = evaluate()
                if acc.is_main_process:
                    _append(metrics_path, {"split": "val", "step": state.step, "tokens_seen": state.tokens_seen,
                                           **last_val})
                    if cfg.tracker:
                        acc.log({f"val/{k}": v for k, v in last_val.items()}, step=state.step)
            if cfg.save_every and state.step % cfg.save_every == 0:
                save()
            if stop.signal is not None or (stop_after is not None and steps_run >= stop_after):
                stopped_by = f"signal {stop.signal}" if stop.signal is not None else f"stop_after={stop_after}"
                if not (cfg.save_every and state.step % cfg.save_every == 0):
                    save()
                break
    elapsed = time.perf_counter() - t_start
    if pbar is not None:
        pbar.close()
    summary = {"step": state.step, "tokens_seen": state.tokens_seen, "steps_per_s": steps_run / max(elapsed, 1e-9),
               "tokens_per_s": tokens_run / max(elapsed, 1e-9), "stopped_by": stopped_by, "val": last_val,
               "num_processes": world, "device": str(acc.device), "mixed_precision": mp}
    if stopped_by is None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            final = out / "final"
            acc.unwrap_model(model).save_pretrained(str(final))
            if cfg.tokenizers:
                dst = final / "tokenizers"
                if dst.exists():
                    shutil.rmtree(dst)
                # the tokenizers only: not their training runs (checkpoints, PNGs under _runs/)
                shutil.copytree(cfg.tokenizers, dst, ignore=shutil.ignore_patterns("_runs"))
            summary["final"] = str(final)
            (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.tracker:
        acc.end_training()
    return summary


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _append(path: Path, rec: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fourm_trainers.train --config cfg.yaml [--resume] [--set key=value ...]``."""
    ap = argparse.ArgumentParser(prog="fourm_trainers.train", description="Train or fine-tune a 4M model.")
    ap.add_argument("--config", required=True, help="training config YAML")
    ap.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoints/latest")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (dotted key, YAML value); repeatable")
    ap.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=os.environ.get("FOURM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
    except TrainConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = train(cfg, resume=args.resume, stop_after=args.stop_after)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
