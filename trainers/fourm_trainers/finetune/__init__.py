"""``fourm finetune``: a 4M encoder (:class:`fourm_core.backbone.Backbone`) with a task head, fine-tuned under
Accelerate on a folder of class sub-folders (classification) or a fourm store whose target modality's raw
values are the labels (dense: depth, normals, semantic segmentation, edges ...).

::

    fourm finetune --config classify_cpu --set data.train.path=data/faces [--resume] [--set key=value ...]
    python -m fourm_trainers.finetune --config cfg.yaml            # the same command
    accelerate launch -m fourm_trainers.finetune --config cfg.yaml

Parts: :mod:`.config` (the strict YAML config), :mod:`.data` (datasets, resumable sampler), :mod:`.setup`
(the task's data and target), :mod:`.model` (backbone + head, loss, ``final/`` format), :mod:`.trainer`
(the loop) and :mod:`.probe` (the raw-pixel linear-probe baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import FinetuneConfig, FinetuneConfigError
from .model import load_finetuned
from .trainer import FineTuner, finetune

__all__ = ["FineTuner", "FinetuneConfig", "FinetuneConfigError", "finetune", "load_finetuned", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fourm_trainers.finetune ...``: the ``fourm finetune`` command on its own."""
    from fourm_registry.cli import run_command

    from ..cli_finetune import finetune_command

    return run_command(finetune_command, argv, prog_name="python -m fourm_trainers.finetune")
