"""Tokenizer training sized to the machine: ``fourm train-tokenizer --small`` (a small architecture that
trains on a CPU in minutes) and ``--minutes M`` (a wall-time budget instead of a step count)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from fourm_core.kinds import adapter_for
from fourm_registry import ModalitySet, ModalitySpec

from .tokenizer_train import TokenizerTrainConfig, TokenizerTrainError, train_tokenizer

log = logging.getLogger(__name__)


#: vocabulary of a small tokenizer: few codes fill up (and become predictable for a small 4M) in few steps
SMALL_VOCAB = {"canny_edge": 128, "tok_rgb": 512}
SMALL_VOCAB_DEFAULT = 256
#: the input size of a small image tokenizer (its token grid stays the modality's)
SMALL_IMAGE_SIZE = 112
#: learning rate of a small tokenizer (unless the config sets one)
SMALL_LR = 2e-3
#: steps of the calibration run of a time budget (their rate sets the step count)
CALIBRATION_STEPS = 8


def small_tokenizer_overrides(spec: ModalitySpec, size: int = SMALL_IMAGE_SIZE) -> dict[str, Any]:
    """Constructor overrides of a small tokenizer for ``spec`` (``--small``), trainable on a CPU in minutes:
    a vector modality gets a small vocabulary; an image modality a one-block ViT VQ-VAE (width 64, code
    dimension 16) whose patch keeps the spec's token grid at input size ``size``."""
    if not adapter_for(spec).image_like:
        return {"vocab_size": SMALL_VOCAB_DEFAULT}
    gh, gw = spec.grid
    patch = max(1, size // gh)
    return dict(image_size=[patch * gh, patch * gw], patch_size=patch, dim=64, depth=1, num_heads=2,
                vocab_size=SMALL_VOCAB.get(spec.name, SMALL_VOCAB_DEFAULT), code_dim=16)


def train_tokenizer_for(modality: str, data: str, out: str | os.PathLike, minutes: float, *,
                        config: TokenizerTrainConfig | None = None, max_steps: int | None = None,
                        modalities: ModalitySet | None = None) -> dict[str, Any]:
    """Train ``modality``'s tokenizer for about ``minutes`` of wall time: a short calibration run measures the
    step rate on this machine, then the run resumes up to the step count that fills the budget (never fewer
    than the calibration's, never more than ``max_steps``). The summary's ``steps`` is that count."""
    if not minutes > 0:
        raise TokenizerTrainError(f"--minutes must be > 0, got {minutes}")
    cfg = config or TokenizerTrainConfig()
    cap = max_steps if max_steps is not None else 10**9
    calib = min(CALIBRATION_STEPS, cap)
    t0 = time.perf_counter()
    first = train_tokenizer(modality, data, out, modalities=modalities,
                            config=dataclasses.replace(cfg, steps=calib, log_every=calib, save_every=10**9))
    summary, steps = first, calib
    for _ in range(3):  # the calibration's rate includes start-up: re-measure on the longer run, extend once or twice
        rate = float(summary["final"].get("images_per_s", 0.0)) / cfg.batch_size  # steps per second
        left = minutes * 60.0 - (time.perf_counter() - t0)
        more = min(cap - steps, int(0.95 * left * rate))
        if more < max(1, steps // 10):
            break
        steps += more
        log.info("train-tokenizer %s: %.2f steps/s here; training to step %d within %.1f min", modality, rate, steps,
                 minutes)
        summary = train_tokenizer(modality, data, out, modalities=modalities, resume=True,
                                  config=dataclasses.replace(cfg, steps=steps, save_every=max(cfg.save_every, steps)))
    return summary
