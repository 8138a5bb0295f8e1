"""Click commands provided by fourm_core. Command modules must not import torch at module level."""

from __future__ import annotations

import importlib

import click

#: modules that each expose ``register_commands(cli)``
COMMAND_MODULES = ("fourm_core.data.cli", "fourm_core.cli_generate", "fourm_core.cli_evaluate")


def register(cli: click.Group) -> None:
    """Add fourm_core's commands to ``cli``."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_commands(cli)
