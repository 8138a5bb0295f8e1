"""Checkpoints of a training run: the training state, ``checkpoints/step_N`` + ``checkpoints/latest``, the final
model, and the SIGTERM/SIGINT flag that makes the loop save and exit cleanly."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

from ..config import TrainConfigError

#: the file under the checkpoint root naming the newest ``step_N`` directory
LATEST = "latest"


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


def save_checkpoint(acc: Any, root: Path, step: int) -> None:
    """``accelerator.save_state`` into ``root/step_<step>`` (every process), then point ``root/latest`` at it."""
    name = f"step_{step}"
    acc.save_state(str(root / name))
    if acc.is_main_process:
        (root / LATEST).write_text(name)
    acc.wait_for_everyone()


def load_latest(acc: Any, root: Path) -> None:
    """Restore the checkpoint ``root/latest`` names (model, optimizer, RNG and every registered object)."""
    latest = root / LATEST
    if not latest.exists():
        raise TrainConfigError(f"--resume: no checkpoint in {root} (no 'latest' file); run without --resume")
    acc.load_state(str(root / latest.read_text().strip()))


def save_final(acc: Any, model: Any, final: Path, tokenizers: str | None) -> None:
    """The trained model under ``final`` (``save_pretrained``), with a copy of the tokenizer directory as
    ``final/tokenizers``. Call on the main process only."""
    acc.unwrap_model(model).save_pretrained(str(final))
    if tokenizers:
        dst = final / "tokenizers"
        if dst.exists():
            shutil.rmtree(dst)
        # the tokenizers only: not their training runs (checkpoints, PNGs under _runs/)
        shutil.copytree(tokenizers, dst, ignore=shutil.ignore_patterns("_runs"))


class StopOnSignal:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
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
