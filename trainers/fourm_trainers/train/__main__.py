"""``python -m fourm_trainers.train`` (and ``accelerate launch -m`` / ``torchrun -m``): the ``fourm train``
command, with the same one-line ``error:`` contract (exit status 2) as ``fourm``."""

from __future__ import annotations

import sys

from fourm_registry.cli import run_command

from ..cli_train import train_command

if __name__ == "__main__":
    sys.exit(run_command(train_command, prog_name="python -m fourm_trainers.train"))
