"""The ``fourm`` command line. Plugins add commands through ``fourm_register_commands``.

This module and the listing commands never import torch: ``fourm --help`` stays fast.
"""

from __future__ import annotations

import json
import sys

import click

from .errors import FourmError
from .manager import get_manager


class FourmGroup(click.Group):
    """Turns fourm's own errors into one clean line (exit code 2) instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FourmError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=FourmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fourm-registry", prog_name="fourm")
def cli() -> None:
    """fourm: massively multimodal masked modeling, one plugin per modality."""


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def plugins_cmd(as_json: bool) -> None:
    """List installed fourm plugins: distribution, version, hooks."""
    infos = get_manager().plugins()
    if as_json:
        click.echo(json.dumps([
            {"name": i.name, "module": i.module, "distribution": i.distribution, "version": i.version,
             "hooks": list(i.hooks)} for i in infos
        ], indent=2))
        return
    for i in infos:
        click.echo(f"{i.name:<16} {i.distribution} {i.version:<10} {', '.join(i.hooks)}")


@cli.command("modalities")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def modalities_cmd(as_json: bool) -> None:
    """List every registered modality."""
    mods = get_manager().modalities()
    if as_json:
        click.echo(json.dumps([s.to_json() for s in mods.specs], indent=2))
        return
    if not len(mods):
        click.echo("no modalities: install a modality plugin (e.g. pip install -e plugins/rgb)")
    for s in mods.specs:
        comps = ",".join(k for k, v in s.components().items() if v) or "-"
        click.echo(f"{s.name:<18} {s.kind:<18} tokens={s.num_tokens!s:<5} vocab={s.vocab_size!s:<6} "
                   f"{s.plugin} {s.version}  [{comps}]")


def main(argv: list[str] | None = None) -> None:
    try:
        get_manager().register_commands(cli)
    except FourmError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    cli.main(args=argv, prog_name="fourm")


if __name__ == "__main__":
    main()
