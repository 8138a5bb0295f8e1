"""``fourm train``: train or fine-tune a 4M model (no torch import at module level).

The one command line of the trainer: ``python -m fourm_trainers.train`` (and ``accelerate launch -m`` /
``torchrun -m``) runs this same command.
"""

from __future__ import annotations

import click


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="training config YAML (see fourm_trainers.config)")
@click.option("--resume", is_flag=True, help="continue from OUT_DIR/checkpoints/latest")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config value: dotted key, YAML value (e.g. --set optimizer.lr=3e-4)")
@click.option("--stop-after", type=int, default=None, hidden=True,
              help="save a checkpoint and exit after this many steps, as a kill would (tests)")
def train_command(config_path: str, resume: bool, overrides: tuple[str, ...], stop_after: int | None) -> None:
    """Train (or fine-tune) 4M on the modalities of the configured datasets.

    Multi-process: `accelerate launch -m fourm_trainers.train --config CFG` or
    `torchrun --nproc_per_node N -m fourm_trainers.train --config CFG`.

    Log level: FOURM_LOG_LEVEL (default INFO).
    """
    import json
    import logging
    import os

    from .config import TrainConfig

    logging.basicConfig(level=os.environ.get("FOURM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig.from_yaml(config_path, overrides)  # a TrainConfigError prints as one `error:` line
    from .train import train

    summary = train(cfg, resume=resume, stop_after=stop_after)
    click.echo(json.dumps(summary))


def register_commands(cli: click.Group) -> None:
    """Add ``fourm train`` to ``cli``."""
    cli.add_command(train_command)
