"""fourm_demo's command, registered through the ``fourm_register_commands`` hook."""

from __future__ import annotations

from fourm_registry import hookimpl


@hookimpl
def fourm_register_commands(cli):
    from . import cli as commands

    commands.register_commands(cli)
