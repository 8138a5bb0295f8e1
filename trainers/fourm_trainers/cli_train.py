"""``fourm train`` and ``fourm configs``: train or fine-tune a 4M model (no torch import at module level).

The one command line of the trainer: ``python -m fourm_trainers.train`` (and ``accelerate launch -m`` /
``torchrun -m``) runs this same command.
"""

from __future__ import annotations

import os

import click

#: caps every step count of ``fourm train`` / ``fourm train-tokenizer`` (smoke runs of documented commands)
MAX_STEPS_ENV = "FOURM_MAX_STEPS"


def max_steps_cap() -> int | None:
    """The ``FOURM_MAX_STEPS`` cap, or ``None``; a bad value raises a ``TrainConfigError``."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    from .config import TrainConfigError

    if not raw.isdigit() or int(raw) < 1:
        raise TrainConfigError(f"{MAX_STEPS_ENV}={raw!r}: must be a positive integer (or unset)")
    return int(raw)


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", required=True, metavar="NAME|FILE",
              help="training config: a YAML file or the name of a shipped one (`fourm configs`, e.g. debug_cpu)")
@click.option("--resume", is_flag=True, help="continue from OUT_DIR/checkpoints/latest")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config value: dotted key, YAML value (e.g. --set optimizer.lr=3e-4)")
@click.option("--stop-after", type=int, default=None, hidden=True,
              help="save a checkpoint and exit after this many steps, as a kill would (tests)")
def train_command(config_path: str, resume: bool, overrides: tuple[str, ...], stop_after: int | None) -> None:
    """Train (or fine-tune) 4M on the modalities of the configured datasets.

    Multi-process: `accelerate launch -m fourm_trainers.train --config CFG` or
    `torchrun --nproc_per_node N -m fourm_trainers.train --config CFG`.

    Log level: FOURM_LOG_LEVEL (default INFO). FOURM_MAX_STEPS=N caps max_steps.
    """
    import json
    import logging

    import attrs

    from .config import TrainConfig

    logging.basicConfig(level=os.environ.get("FOURM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig.from_yaml(config_path, overrides)  # a TrainConfigError prints as one `error:` line
    cap = max_steps_cap()
    if cap is not None and cfg.max_steps > cap:
        cfg = attrs.evolve(cfg, max_steps=cap)
    from .train import train

    summary = train(cfg, resume=resume, stop_after=stop_after)
    click.echo(json.dumps(summary))


@click.command("configs")
@click.option("--show", "show", default=None, metavar="NAME", help="print one shipped config")
def configs_command(show: str | None) -> None:
    """List the training configs shipped with fourm_trainers (use one with `fourm train --config NAME`)."""
    from .config import config_path, shipped_configs

    if show is not None:
        click.echo(config_path(show).read_text(encoding="utf-8"), nl=False)
        return
    for name, path in shipped_configs().items():
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        about = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
        click.echo(f"{name:<16} {path}" + (f"\n    {about}" if about else ""))


def register_commands(cli: click.Group) -> None:
    """Add ``fourm train`` and ``fourm configs`` to ``cli``."""
    cli.add_command(train_command)
    cli.add_command(configs_command)
