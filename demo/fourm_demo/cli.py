"""``fourm demo``: load a model once, then serve the demo page until Ctrl-C. No torch import at module level
(``fourm --help`` stays fast)."""

from __future__ import annotations

from pathlib import Path

import click

from fourm_registry.errors import FourmError


def make_command() -> click.Command:
    """The ``demo`` command (also run by ``python -m fourm_demo``)."""

    @click.command("demo")
    @click.option("--model", required=True, metavar="DIR_OR_HUB_ID",
                  help="a fourm checkpoint directory (with tokenizers/), a released 4M directory or a hub id")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="address to listen on (0.0.0.0 exposes the model to the network)")
    @click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True,
                  help="port to listen on (0: any free port, printed at start-up)")
    @click.option("--tokenizers", "tok_dir", default=None, help="tokenizer directory (default: MODEL/tokenizers)")
    @click.option("--device", default="cpu", show_default=True)
    def demo_cmd(model: str, host: str, port: int, tok_dir: str | None, device: str) -> None:
        """A local web page to run MODEL on a photo: drop an image, pick targets and settings, see the
        rendered outputs and their raw JSON."""
        from fourm_registry.cli import check_device, context

        from fourm_core.cli_generate import _check_model_arg

        from .app import DemoApp
        from .server import DemoServer

        _check_model_arg(model)
        if tok_dir is not None and not Path(tok_dir).is_dir():
            raise click.BadParameter(f"{tok_dir!r} is not a directory; pass the tokenizer directory of "
                                     f"`fourm train-tokenizer --out DIR` (default: MODEL/tokenizers)",
                                     param_hint="--tokenizers")
        check_device(device)
        with context(f"--model {model}"):
            app = DemoApp.load(model, device=device, tokenizers=tok_dir)
        try:
            server = DemoServer(app, host, port)
        except OSError as exc:
            raise FourmError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); pick "
                             f"another port (--port 0 takes any free one)") from None
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"warning: listening on {host}: anyone who reaches this machine can run the model", err=True)
        targets = ", ".join(app.targets()) or "none"
        click.echo(f"fourm demo: {model} (targets: {targets}) at {server.url}  (Ctrl-C stops it)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("fourm demo: stopped")
        finally:
            server.server_close()

    return demo_cmd


def register_commands(cli: click.Group) -> None:
    """Add ``demo`` to ``cli``."""
    cli.add_command(make_command())
