"""Click commands provided by fourm_trainers. Command modules must not import torch at module level."""

from __future__ import annotations

import importlib

import click

#: modules that each expose ``register_commands(cli)``
COMMAND_MODULES = ("fourm_trainers.cli_train", "fourm_trainers.cli_tokenizer", "fourm_trainers.cli_finetune")


def register(cli: click.Group) -> None:
    """Add fourm_trainers' commands to ``cli``."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_commands(cli)
