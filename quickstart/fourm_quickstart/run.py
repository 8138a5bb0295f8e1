"""The whole quickstart run: the five stages in order, one line of output each, ``OUT/summary.json``."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fourm_registry import ModalitySet

from .config import LEFT_OUT_REASONS, REQUIRED, QuickstartConfig, QuickstartError, labeler_kwargs
from .plan import plan_labelers
from .scores import verdict
from .stages import Clock, build_data, train_fourm_timeboxed, train_tokenizers_timeboxed

log = logging.getLogger(__name__)


def run_quickstart(cfg: QuickstartConfig, *, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage into ``cfg.out``; returns the summary (also written to ``OUT/summary.json``)."""
    import torch

    from fourm_registry import get_modalities

    say = echo or (lambda s: log.info("%s", s))
    clock = Clock(cfg.minutes)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    installed = get_modalities()
    missing = [n for n in REQUIRED if n not in installed]
    if missing:
        raise QuickstartError(f"quickstart needs the modalities {', '.join(REQUIRED)}; missing {', '.join(missing)}: "
                              f"install the plugins (pip install -e plugins/rgb -e plugins/canny_edge) and check "
                              f"FOURM_PLUGINS / FOURM_DISABLE_PLUGINS")
    config = {k: (dict(v) if k == "model" else v) for k, v in dataclasses.asdict(cfg).items()}
    summary: dict[str, Any] = {"config": config, "torch_threads": torch.get_num_threads(), "ran": [], "skipped": []}
    run = _Run(cfg, out, installed, clock, say, summary)
    data = run.data(rng)
    runnable = run.label(data["url"])
    image_like, sequences = run.learned(runnable)
    tok_dir = run.tokenizers(data["url"], image_like, sequences)
    names = image_like + sequences
    run.tokenize(data["url"], names, tok_dir)
    final = run.train(data["url"], names, sequences, tok_dir)
    run.generate(final, data, names)
    summary["timings_s"] = {**clock.stages, "total": round(clock.elapsed(), 1)}
    summary["budget_s"] = clock.budget
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    beat = sum(t["beats_baseline"] for t in summary["tasks"].values())
    say(f"done in {clock.elapsed():.0f} s: the 4M beats the trivial baseline in {beat} of {len(summary['tasks'])} "
        f"tasks on held-out photos; {', '.join(Path(p).name for p in summary['generation']['pngs'])}, "
        f"overview.png and summary.json in {out}")
    return summary


@dataclasses.dataclass
class _Run:
    """One run's shared state: each method is one stage, timed on ``clock``, recorded in ``summary``."""

    cfg: QuickstartConfig
    out: Path
    installed: ModalitySet
    clock: Clock
    say: Callable[[str], None]
    summary: dict[str, Any]

    def data(self, rng: np.random.Generator) -> dict[str, Any]:
        with self.clock.stage("data"):
            data = build_data(self.cfg, self.out / "data", rng)
        self.say(f"[1/5] data: {data['num_samples']} crops of {len(data['train_photos'])} photos -> {data['url']}; "
                 f"{len(data['eval_rgb'])} held-out crops of {', '.join(data['held_out_photos'])} "
                 f"({self.clock.stages['data']:.0f} s)")
        self.summary["data"] = {k: v for k, v in data.items() if not k.startswith("eval_rgb")}
        return data

    def label(self, url: str) -> list[str]:
        from fourm_core.data import label

        with self.clock.stage("label"):
            runnable, skipped = plan_labelers(self.installed, use_models=self.cfg.use_model_labelers)
            for s in skipped:
                self.say(f"      skip label {s['modality']} ({s['reason']}); to enable: {s['enable']}")
            label(url, runnable, labeler_kwargs=labeler_kwargs(self.cfg, runnable))
        self.summary["skipped"] += [{"stage": "label", **s} for s in skipped]
        self.summary["ran"].append({"stage": "label", "modalities": runnable})
        self.say(f"[2/5] label: {', '.join(runnable)} ({self.clock.stages['label']:.0f} s); skipped {len(skipped)} "
                 f"(see above)")
        return runnable

    def learned(self, runnable: list[str]) -> tuple[list[str], list[str]]:
        """What the 4M learns: rgb (+ its tokens) and every labeled modality with a decoder, as ``(image-like
        modalities with a tokenizer, sequences)``; the others are recorded as skipped."""
        mods = self.installed
        used = {"canny_edge", "color_palette", *self.cfg.rgb_targets}  # the inputs of edges + palette → rgb
        left_out = [n for n in runnable if n not in used]
        for n in left_out:
            self.summary["skipped"].append({"stage": "train", "modality": n, "reason": LEFT_OUT_REASONS.get(
                n, "no quickstart task uses it (the rgb -> X targets are canny_edge, color_palette, metadata)")})
        learnable = [n for n in runnable if n not in left_out]
        image_like = ["tok_rgb"] + [n for n in learnable if mods[n].kind in ("image", "vector") and mods[n].tokenizer]
        sequences = [n for n in learnable if mods[n].kind == "sequence"]
        for n in learnable:
            if n not in image_like and n not in sequences:
                self.summary["skipped"].append({"stage": "train", "modality": n,
                                                "reason": f"kind {mods[n].kind} (labeled only)"})
        return image_like, sequences

    def tokenizers(self, url: str, image_like: list[str], sequences: list[str]) -> Path:
        cfg, clock = self.cfg, self.clock
        tok_dir = self.out / "tokenizers"
        if tok_dir.exists():
            shutil.rmtree(tok_dir)
        with clock.stage("tokenizers"):
            fixed_left = clock.left() - 60.0  # tokenize + generation + margin
            seconds = max(10.0, fixed_left * cfg.tokenizer_share / (cfg.tokenizer_share + cfg.train_share))
            tok_info = train_tokenizers_timeboxed(image_like, url, tok_dir, seconds, cfg, self.installed)
            if sequences:
                from fourm_trainers.tokenizer_train import TokenizerTrainConfig, train_text_tokenizer

                text = train_text_tokenizer(url, tok_dir, config=TokenizerTrainConfig(vocab_size=6000),
                                            modalities=self.installed)
                tok_info["text"] = {"vocab_size": text["vocab_size"], "samples": text["samples"]}
        self.summary["tokenizers"] = tok_info
        self.say("[3/5] tokenizers: " + ", ".join(f"{n} {v['steps']} steps loss {_fmt(v['recon_loss'])}"
                                                  for n, v in tok_info.items() if "steps" in v)
                 + (f"; text vocabulary {tok_info['text']['vocab_size']}" if "text" in tok_info else "")
                 + f" ({clock.stages['tokenizers']:.0f} s)")
        return tok_dir

    def tokenize(self, url: str, names: list[str], tok_dir: Path) -> None:
        from fourm_core.data import tokenize

        with self.clock.stage("tokenize"):
            tokenize(url, names, crops=self.cfg.token_crops, tokenizers_dir=str(tok_dir), seed=self.cfg.seed)
        self.say(f"[3/5] tokenize: {', '.join(names)} x {self.cfg.token_crops} crops "
                 f"({self.clock.stages['tokenize']:.0f} s)")

    def train(self, url: str, names: list[str], sequences: list[str], tok_dir: Path) -> str:
        """Train the 4M on rgb and ``names``; returns its final model directory."""
        from fourm_core.tokenizers import load_codecs

        codecs = load_codecs(tok_dir, self.installed.subset(names))
        vocab = {n: int(c.vocab_size) for n, c in codecs.items() if self.installed[n].kind != "sequence"}
        with self.clock.stage("train"):
            info = train_fourm_timeboxed(url, tok_dir, self.out / "model", ["rgb", *names], vocab,
                                         max(10.0, self.clock.left() - 30.0), self.cfg, sequences)
        self.summary["train"] = info
        self.say(f"[4/5] train 4M: {info['steps']} steps, loss {_fmt(info['loss'])} "
                 f"({info['tokens_per_s']:.0f} tokens/s, {self.clock.stages['train']:.0f} s)")
        return info["final"]

    def generate(self, model_dir: str, data: dict[str, Any], names: list[str]) -> None:
        from .evaluate import generate_and_evaluate

        with self.clock.stage("generate"):
            gen = generate_and_evaluate(model_dir, data, data["url"], names, self.out, self.cfg)
        self.summary["generation"] = {k: v for k, v in gen.items() if k not in ("tasks", "auxiliary")}
        self.summary["tasks"] = gen["tasks"]
        self.summary["auxiliary"] = gen["auxiliary"]
        self.summary["all_tasks_beat_baseline"] = gen["all_beat_baseline"]
        self.summary["ran"].append({"stage": "generate", "tasks": list(gen["tasks"])})
        self.say(f"[5/5] generate on {gen['eval_crops']} held-out crops ({self.clock.stages['generate']:.0f} s):")
        for task, rec in gen["tasks"].items():
            self.say("      " + task_line(task, rec))
        for task, rec in gen["auxiliary"].items():
            self.say(f"      auxiliary, not shown: {task_line(task, rec)}; {rec['reason']}")


def task_line(task: str, rec: dict[str, Any]) -> str:
    """One task's figures on one line (the run's output)."""
    return (f"{task}: {rec['metric']} 4M {rec['model']:.3g}, baseline {rec['baseline']:.3g}, tokenizer oracle "
            f"{rec['oracle']:.3g} ({'higher' if rec['higher_is_better'] else 'lower'} is better: {verdict(rec)})")


def _fmt(fl: dict[str, Any]) -> str:
    f, l = fl.get("first"), fl.get("last")
    return "?" if f is None else f"{f:.3f} -> {l:.3f}"
