"""Checkpoints of a training run: the training state, ``checkpoints/step_N`` + ``checkpoints/latest``, the final
model, and the SIGTERM/SIGINT flag that makes the loop save and exit cleanly.

Crash safety: ``latest`` is written atomically (temp file, fsync, rename) by the main process only after every
process finished saving ``step_N``, so it always names a complete checkpoint; a ``step_N`` folder a kill
interrupted is never named by it. The final model's tokenizer copy is built beside it and swapped in.
"""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path
from typing import Any

from fourm_core.data.atomic import replace_dir, write_text

from ..config import TrainConfigError

#: the file under the checkpoint root naming the newest ``step_N`` directory
LATEST = "latest"


class TrainState:
    """What ``save_state`` stores besides model/optimizer/RNG: progress, the data position, and the optimizer
    steps skipped so far (non-finite gradients)."""

    def __init__(self) -> None:
        self.step = 0
        self.tokens_seen = 0
        self.epoch = 0
        self.position = 0
        self.skipped_steps = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "tokens_seen": self.tokens_seen, "epoch": self.epoch, "position": self.position,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.skipped_steps = int(state.get("skipped_steps", 0))  # checkpoints written before it was counted


def save_checkpoint(acc: Any, root: Path, step: int) -> None:
    """``accelerator.save_state`` into ``root/step_<step>`` (every process), then, once every process has
    saved, point ``root/latest`` at it (atomically)."""
    name = f"step_{step}"
    acc.save_state(str(root / name))
    acc.wait_for_everyone()  # every rank's shard of the state is on disk before latest names it
    if acc.is_main_process:
        write_text(root / LATEST, name)
    acc.wait_for_everyone()


def load_latest(acc: Any, root: Path) -> None:
    """Restore the checkpoint ``root/latest`` names (model, optimizer, RNG and every registered object)."""
    path = latest_dir(root)
    acc.load_state(str(path))


def latest_dir(root: Path) -> Path:
    """The checkpoint folder ``root/latest`` names; a clear error when it is missing, empty or names no folder."""
    latest = root / LATEST
    if not latest.exists():
        raise TrainConfigError(f"--resume: no checkpoint in {root} (no 'latest' file); run without --resume")
    name = latest.read_text(errors="replace").strip()
    have = sorted((p.name for p in root.glob("step_*") if p.is_dir()),
                  key=lambda n: int(n[5:]) if n[5:].isdigit() else -1)
    if not re.fullmatch(r"step_\d+", name) or not (root / name).is_dir():
        raise TrainConfigError(
            f"--resume: {latest} should name a checkpoint folder (step_N) but holds {name[:40]!r}"
            f"{'' if (root / name).is_dir() or not name else ', which is not a folder there'}; checkpoint folders "
            f"there: {', '.join(have) or 'none'}. Write the name of a complete one into {latest} (e.g. "
            f"`echo {have[-1] if have else 'step_N'} > {latest}`), or run without --resume"
        )
    return root / name


def save_final(acc: Any, model: Any, final: Path, tokenizers: str | None) -> None:
    """The trained model under ``final`` (``save_pretrained``, full weights: a sharded model is gathered
    first), with a copy of the tokenizer directory as ``final/tokenizers``. Every process calls this (the
    gathering is collective); the main process writes."""
    from . import distributed

    state = distributed.full_state_dict(acc, model)
    if acc.is_main_process:
        inner = acc.unwrap_model(model)
        (inner if state is None else distributed.unsharded_copy(inner, state)).save_pretrained(str(final))
        if tokenizers:
            # the tokenizers only: not their training runs (checkpoints, PNGs under _runs/)
            replace_dir(final / "tokenizers", lambda tmp: shutil.copytree(tokenizers, tmp, dirs_exist_ok=True,
                                                                          ignore=shutil.ignore_patterns("_runs")))
    acc.wait_for_everyone()


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
