"""The quickstart's stages that build things: the data (crops → store), the tokenizers and the 4M, the two
trainers time-boxed to a share of the budget (a few calibration steps, then a resume with as many steps as the
remaining time allows at the measured speed)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fourm_registry import ModalitySet, ModalitySpec

from .config import HELD_OUT, QuickstartConfig
from .photos import centre_and_random_crops, load_photos, random_crops, recolor

log = logging.getLogger(__name__)


class Clock:
    """Stage timings and the remaining budget."""

    def __init__(self, minutes: float):
        self.t0 = time.perf_counter()
        self.budget = minutes * 60.0
        self.stages: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - t, 2)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _first_last(records: list[dict[str, Any]], key: str = "loss") -> dict[str, float | None]:
    vals = [r[key] for r in records if key in r and r.get("split") is None]
    return {"first": vals[0] if vals else None, "last": vals[-1] if vals else None}


def _steps_for(seconds: float, rate: float, done: int, minimum: int) -> int:
    return max(minimum, done + int(max(0.0, seconds) * rate))


def rate_and_overhead(short: tuple[int, float], long: tuple[int, float], fallback: float) -> tuple[float, float]:
    """Steps per second and the seconds one trainer call spends outside its steps (building, the loader's first
    batch, the checkpoint), from two calls of ``(steps, wall seconds)`` with different step counts: the
    difference of their times is ``Δsteps / rate``, free of the per-call cost. A measurement that does not
    resolve (the longer call no slower, from noise) falls back to ``fallback`` steps/s for the whole call."""
    (n1, w1), (n2, w2) = short, long
    if n2 > n1 and w2 > w1:
        rate = (n2 - n1) / (w2 - w1)
        return rate, max(0.0, w1 - n1 / rate)
    rate = max(fallback, 1e-9)
    return rate, max(0.0, w2 - n2 / rate)


# --------------------------------------------------------------------------------------------------
# stage 1: data
def build_data(cfg: QuickstartConfig, data_dir: Path, rng: np.random.Generator) -> dict[str, Any]:
    """Write training crops as PNGs, ingest them into ``data_dir/train.zarr``; return the evaluation crops."""
    from PIL import Image

    from fourm_core.data import ingest

    photos = load_photos()
    held = [n for n in HELD_OUT if n in photos]
    train_names = [n for n in photos if n not in held]
    if not held:  # a package lacks every held-out photo: hold out the last one found
        held, train_names = train_names[-1:], train_names[:-1]
    per = [cfg.samples // len(train_names) + (1 if i < cfg.samples % len(train_names) else 0)
           for i in range(len(train_names))]
    folder = data_dir / "photos"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    from fourm_core.data.jobkit import progress_bar

    with progress_bar(cfg.samples, "crops", unit="crop") as bar:
        for name, n in zip(train_names, per):
            crops = random_crops(photos[name], n, cfg.raw_size, rng)
            for i, crop in enumerate(recolor(crops, rng) if cfg.recolor else crops):
                Image.fromarray(crop).save(folder / f"{name}_{i:03d}.png", compress_level=1)
                bar.update(1)
    url = str(data_dir / "train.zarr")
    report = ingest(str(folder), url, raw_size=cfg.raw_size, samples_per_shard=64, overwrite=True)
    eval_crops, eval_names = [], []
    for name in held:
        crops = centre_and_random_crops(photos[name], cfg.eval_crops, cfg.raw_size, rng)
        eval_crops += crops
        eval_names += [f"{name}_{i}" for i in range(len(crops))]
    # interleave photos so that the first rows of a grid show every held-out photo
    order = sorted(range(len(eval_crops)), key=lambda i: (i % cfg.eval_crops, i // cfg.eval_crops))
    return {"url": url, "num_samples": report.num_samples, "train_photos": train_names, "held_out_photos": held,
            "eval_rgb": [eval_crops[i] for i in order], "eval_names": [eval_names[i] for i in order],
            "crops_dir": str(folder)}


# --------------------------------------------------------------------------------------------------
# stage 3: tokenizers
#: the demo's small tokenizer vocabularies (every other modality: :data:`SMALL_VOCAB_DEFAULT`): few codes fill
#: up within the quickstart's tokenizer steps, and a 4M trained for minutes can tell them apart (with 128 edge
#: codes it spread its belief over many stroke codes and predicted the blank one everywhere)
SMALL_VOCAB = {"tok_rgb": 128, "canny_edge": 32}
SMALL_VOCAB_DEFAULT = 256
#: share of the tokenizer budget per modality (others: 1.0). Thin edges are the hardest to tokenize: the edge
#: tokenizer gets the largest share (tok_rgb only needs the patches' colours, learnt in a few dozen steps)
TOKENIZER_TIME_WEIGHTS = {"canny_edge": 1.5}


def small_tokenizer_overrides(spec: ModalitySpec, size: int) -> dict[str, Any]:
    """Constructor overrides of a tiny tokenizer for ``spec``, derived from the spec itself: a vector
    modality only gets a small vocabulary; an image modality a one-block ViT VQ-VAE whose patch size keeps the
    spec's token grid at input size ``size`` (patch = size // grid rows). Channels and the decoder stay the
    plugin's own (its tokenizer factory's defaults)."""
    if spec.kind == "vector":
        return {"vocab_size": SMALL_VOCAB_DEFAULT}
    gh, gw = spec.grid
    patch = max(1, size // gh)
    return dict(image_size=[patch * gh, patch * gw], patch_size=patch, dim=64, depth=1, num_heads=2,
                vocab_size=SMALL_VOCAB.get(spec.name, SMALL_VOCAB_DEFAULT), code_dim=16)


def train_tokenizers_timeboxed(names: Sequence[str], url: str, tok_dir: Path, seconds: float, cfg: QuickstartConfig,
                               modalities: ModalitySet) -> dict[str, Any]:
    """Train each image/vector tokenizer for its share of ``seconds`` (calibrate, then resume)."""
    from fourm_trainers.tokenizer_train import TokenizerTrainConfig, train_tokenizer

    weights = {n: TOKENIZER_TIME_WEIGHTS.get(n, 1.0) for n in names}
    total_w = sum(weights.values()) or 1.0
    out: dict[str, Any] = {}
    calib = 8
    for n in names:
        spec = modalities[n]
        budget = seconds * weights[n] / total_w
        t0 = time.perf_counter()
        base = dict(batch_size=32, lr=2e-3, warmup_steps=0, crop_scale=(0.4, 1.0), save_every=10**9, log_every=calib,
                    seed=cfg.seed, cpu=True, num_recon_images=cfg.show, num_workers=1,
                    tokenizer=small_tokenizer_overrides(spec, cfg.tokenizer_size))
        first = train_tokenizer(n, url, tok_dir, config=TokenizerTrainConfig(steps=calib, **base),
                                modalities=modalities)
        rate = float(first["final"].get("images_per_s", 0.0)) / base["batch_size"]  # steps / s
        left = budget - (time.perf_counter() - t0)
        fixed = cfg.tokenizer_steps if cfg.tokenizer_steps is not None else cfg.steps
        steps = fixed if fixed is not None else _steps_for(left * 0.95, rate, calib, cfg.min_tokenizer_steps)
        summary = train_tokenizer(n, url, tok_dir,
                                  config=TokenizerTrainConfig(steps=steps, **{**base, "log_every": 10}),
                                  resume=True, modalities=modalities)
        records = _read_jsonl(Path(summary["metrics_file"]))
        recon = summary.get("recon_png")
        out[n] = {"steps": steps, "seconds": round(time.perf_counter() - t0, 1),
                  "recon_loss": _first_last(records, "recon_loss") if any("recon_loss" in r for r in records)
                  else _first_last(records), "codebook_usage": records[-1].get("usage") if records else None,
                  "recon_png": recon}
        log.info("quickstart: tokenizer %s: %d steps in %.0f s, loss %s", n, steps, out[n]["seconds"],
                 out[n]["recon_loss"])
    return out


# --------------------------------------------------------------------------------------------------
# stage 4: 4M training
#: input alpha of a sequence in components where it should (almost) always be fully masked: > 0 so that the
#: sequence's ``min_tokens`` = 1 applies (one visible sentinel, as the sampler conditions), tiny so that the
#: Dirichlet share rarely gives it more
_TINY_ALPHA = 1e-3
#: encoder / decoder token budgets per sample: the input budget shows most of the photo's 196 patches, as the
#: rgb → X evaluation shows all of them (an edge token is mostly read off its own patch)
INPUT_TOKENS, TARGET_TOKENS = (128, 196), (64, 128)
#: weights of the masking mixture's components (:func:`quickstart_masking`): the tasks the run evaluates
MIXTURE_WEIGHTS = {"all2all": 0.0, "rgb2all": 0.5, "edges+palette2rgb": 0.5}


def quickstart_masking(names: Sequence[str], sequences: Sequence[str], *, input_tokens: tuple[int, int],
                       target_tokens: tuple[int, int], rgb_targets: Sequence[str] | None = None) -> dict[str, Any]:
    """The quickstart's masking mixture (a :class:`fourm_core.masking.MaskingConfig` mapping).

    * ``all2all`` (weight :data:`MIXTURE_WEIGHTS`, 0 by default: left out): every modality is input and
      target (alphas 0.5), as in the reference;
    * ``rgb2all`` (when something is predicted from rgb: ``rgb_targets``, every modality when None): the
      photo's pixels are the input, the rgb targets the targets, and each target sequence is **entirely**
      masked: its encoder input is the single sentinel ``[S_1]`` and its target ``[S_1] tokens... [EOS]
      [S_2]``, exactly what the autoregressive sampler conditions on at inference (rgb → palette). Without
      such samples a small model only sees short spans of a sequence as targets and learns to close a span
      after 1–3 tokens;
    * ``edges+palette2rgb``: ``canny_edge`` and ``color_palette`` (kept whole) are the input, ``tok_rgb``
      the target (the edges + palette → rgb task).

    Weights are normalised to sum to 1. Every sequence gets ``min_tokens: 1``: the masker gives a sequence
    with a zero input budget no encoder token at all while the sampler always shows ``[S_1]`` (see
    ``tests/quickstart/test_masking_layout.py``); with one token of input budget a fully masked sequence is
    laid out as the sampler expects.
    """
    seq = [n for n in sequences if n in names]
    image_targets = [n for n in names if n not in seq and n not in ("rgb", "tok_rgb")]
    out_seq = list(seq)
    if rgb_targets is not None:
        image_targets = [n for n in image_targets if n in rgb_targets]
        out_seq = [n for n in seq if n in rgb_targets]
    comps: list[dict[str, Any]] = []
    if MIXTURE_WEIGHTS["all2all"] > 0:
        comps.append({"name": "all2all", "weight": MIXTURE_WEIGHTS["all2all"], "input_alphas": {"*": 0.5},
                      "target_alphas": {"*": 0.5}})
    if image_targets or out_seq:
        comps.append({"name": "rgb2all", "weight": MIXTURE_WEIGHTS["rgb2all"],
                      "input_alphas": {"*": 0.0, "rgb": 1.0, **{n: _TINY_ALPHA for n in out_seq}},
                      "target_alphas": {"*": 0.0, **{n: 0.5 for n in image_targets}, **{n: 1.0 for n in out_seq}}})
    if "canny_edge" in names and "tok_rgb" in names:
        cond = ["canny_edge"] + (["color_palette"] if "color_palette" in names else [])
        comps.append({"name": "edges+palette2rgb", "weight": MIXTURE_WEIGHTS["edges+palette2rgb"],
                      "input_alphas": {"*": 0.0, **{n: 1.0 for n in cond}},
                      "target_alphas": {"*": 0.0, "tok_rgb": 1.0},
                      "keep": {n: "all" for n in cond if n in seq}})
    total = sum(c["weight"] for c in comps)
    for c in comps:
        c["weight"] = round(c["weight"] / total, 6)
    return {"input_tokens": list(input_tokens), "target_tokens": list(target_tokens), "mixture": comps,
            "modalities": {n: {"min_tokens": 1} for n in seq}}


def train_fourm_timeboxed(url: str, tok_dir: Path, run_dir: Path, names: Sequence[str], vocab: dict[str, int],
                          seconds: float, cfg: QuickstartConfig, sequences: Sequence[str] = ()) -> dict[str, Any]:
    """Train a small 4M for about ``seconds`` (a few calibration steps, then resume with the rest)."""
    from fourm_trainers.config import TrainConfig
    from fourm_trainers.train import train

    tokens_per_step = 256
    base = {
        "out_dir": str(run_dir), "datasets": [{"path": url}], "modalities": list(names), "tokenizers": str(tok_dir),
        "model": {"preset": "debug", **dict(cfg.model)}, "vocab_sizes": vocab,
        "masking": quickstart_masking(names, sequences, input_tokens=INPUT_TOKENS, target_tokens=TARGET_TOKENS,
                                      rgb_targets=cfg.rgb_targets),
        "batch_size": cfg.batch_size, "optimizer": {"lr": 2e-3, "min_lr": 1e-4, "weight_decay": 0.05},
        "schedule": {"warmup_tokens": 20 * cfg.batch_size * tokens_per_step}, "clip_grad": 1.0,
        "log_every": 5, "seed": cfg.seed, "cpu": True, "mixed_precision": "no",
        # one loader process reads and crops the next batch while the step computes (a third of a step here)
        "num_workers": 1,
    }
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    calib = 10
    open_ended = TrainConfig.from_dict({**base, "max_steps": 10**6})
    train(open_ended, stop_after=calib)
    fixed = cfg.train_steps if cfg.train_steps is not None else cfg.steps
    if fixed is not None:
        steps = fixed
    else:
        # the first steps are slow (allocator warm-up); each later call also pays a fixed cost outside its steps
        # (building, the loader worker's first batch, the checkpoint: 3-5 s here, a third of a 10-step chunk).
        # Two more calls of 10 and 20 steps measure both: the difference of their times is the step rate alone
        # (a rate taken from one short call included that cost and left up to a quarter of the budget unused)
        walls = []
        for n in (calib, 2 * calib):
            t1 = time.perf_counter()
            chunk = train(open_ended, resume=True, stop_after=n)
            walls.append((n, time.perf_counter() - t1))
        rate, overhead = rate_and_overhead(walls[0], walls[1], float(chunk["steps_per_s"]))
        left = seconds - (time.perf_counter() - t0) - overhead
        steps = _steps_for(left * 0.97, rate, 4 * calib, cfg.min_train_steps)
    summary = train(TrainConfig.from_dict({**base, "max_steps": steps}), resume=True)
    records = _read_jsonl(run_dir / "metrics.jsonl")
    per_mod = {k.split("/", 1)[1]: _first_last(records, k) for k in sorted({k for r in records for k in r})
               if k.startswith("loss/")}
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "steps_per_s": summary["steps_per_s"],
            "tokens_per_s": summary["tokens_per_s"], "loss": _first_last(records), "loss_per_modality": per_mod,
            "final": summary.get("final"), "model": base["model"], "batch_size": cfg.batch_size,
            "masking": base["masking"]}

