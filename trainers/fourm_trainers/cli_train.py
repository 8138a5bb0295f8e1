"""``fourm train``: train or fine-tune a 4M model (no torch import at module level)."""

from __future__ import annotations

import click


def register_commands(cli: click.Group) -> None:
    """Add ``fourm train`` to ``cli``."""

    @cli.command("train")
    @click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                  help="training config YAML (see fourm_trainers.config)")
    @click.option("--resume", is_flag=True, help="continue from OUT_DIR/checkpoints/latest")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="override a config value: dotted key, YAML value (e.g. --set optimizer.lr=3e-4)")
    def train_cmd(config_path: str, resume: bool, overrides: tuple[str, ...]) -> None:
        """Train (or fine-tune) 4M on the modalities of the configured datasets.

        Multi-process: `accelerate launch -m fourm_trainers.train --config CFG` or
        `torchrun --nproc_per_node N -m fourm_trainers.train --config CFG`.
        """
        import json
        import logging

        from .config import TrainConfig

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = TrainConfig.from_yaml(config_path, overrides)  # a TrainConfigError prints as one `error:` line
        from .train import train

        summary = train(cfg, resume=resume)
        click.echo(json.dumps(summary))
