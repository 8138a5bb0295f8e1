"""Command-line entry points of this part (filled in by its issue). No torch import at module level."""

from __future__ import annotations

import click


def register_commands(cli: click.Group) -> None:
    """Add this module's commands to ``cli``."""
