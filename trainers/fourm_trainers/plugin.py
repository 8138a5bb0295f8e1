"""fourm_trainers' commands, registered through the ``fourm_register_commands`` hook."""

from __future__ import annotations

from fourm_registry import hookimpl


@hookimpl
def fourm_register_commands(cli):
    from . import commands

    commands.register(cli)
