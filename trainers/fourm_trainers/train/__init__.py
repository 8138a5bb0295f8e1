"""4M training and fine-tuning under Hugging Face Accelerate.

::

    fourm train --config cfg.yaml [--resume] [--set key=value ...]
    python -m fourm_trainers.train --config cfg.yaml [--resume] [--set key=value ...]   # the same command
    accelerate launch -m fourm_trainers.train --config cfg.yaml
    torchrun --nproc_per_node 2 -m fourm_trainers.train --config cfg.yaml

Outputs under ``out_dir``: ``metrics.jsonl`` (one JSON object per logged step: ``step``, ``tokens_seen``,
``lr``, ``loss``, ``loss/<modality>``; validation lines carry ``"split": "val"``), ``checkpoints/step_N``
(``accelerator.save_state``: model, optimizer, RNG, and the training state: step, tokens seen, data position),
``checkpoints/latest`` (name of the newest one), ``config.yaml`` (the resolved config), ``final/`` (the model via
``save_pretrained`` plus ``final/tokenizers/`` copied from the config's tokenizer directory), TensorBoard logs
when ``tracker: tensorboard``.

Exact resume: the data order is a pure function of (seed, epoch) (:class:`fourm_core.data.FourMSampler`), the
position in it is saved, and each step's masking uses a generator seeded by (seed, step, micro-batch, rank), so
a single-process run stopped and resumed logs the same losses as an uninterrupted run.

The parts: :mod:`.build` (modalities, vocabularies, model, optimizer and LR schedule, Accelerator, data),
:mod:`.trainer` (:class:`Trainer`: ``build`` / ``resume`` / ``step`` / ``evaluate`` / ``save_checkpoint`` /
``fit``; :func:`train`), :mod:`.schedules` (LR and weight-decay schedules), :mod:`.distributed` (FSDP2 /
DeepSpeed preparation, gathering sharded weights), :mod:`.checkpointing` (training state, checkpoints, final
model, the stop signal) and :mod:`.metrics` (``metrics.jsonl``). The trainer looks each part up in its own module at call time, so a test
replaces one there (e.g. ``fourm_trainers.train.build.build_or_load_model``), not in this package.
"""

from __future__ import annotations

from collections.abc import Sequence

from .build import (EMBEDDING_PREFIXES, NO_DECAY_KEYS, KindRules, build_or_load_model, discover_modalities,
                    enable_activation_checkpointing, kind_rules, lr_at, param_groups, vocab_sizes)
from .checkpointing import TrainState
from .trainer import StepStats, Trainer, train

__all__ = ["EMBEDDING_PREFIXES", "NO_DECAY_KEYS", "KindRules", "StepStats", "TrainState", "Trainer",
           "build_or_load_model", "discover_modalities", "enable_activation_checkpointing", "kind_rules", "lr_at",
           "main", "param_groups", "train", "vocab_sizes"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fourm_trainers.train ...``: the ``fourm train`` command on its own; returns the exit status.
    An error the user can fix prints one ``error:`` line and returns 2, as under ``fourm``."""
    from fourm_registry.cli import run_command

    from ..cli_train import train_command

    return run_command(train_command, argv, prog_name="python -m fourm_trainers.train")
