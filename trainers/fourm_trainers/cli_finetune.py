"""``fourm finetune``: fine-tune a 4M encoder with a task head (no torch import at module level)."""

from __future__ import annotations

import os

import click


@click.command("finetune", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", required=True, metavar="NAME|FILE",
              help="fine-tuning config: a YAML file or a shipped one (classify_cpu, dense_cpu)")
@click.option("--resume", is_flag=True, help="continue from OUT_DIR/checkpoints/latest")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config value: dotted key, YAML value (e.g. --set data.train.path=data/faces)")
@click.option("--stop-after", type=int, default=None, hidden=True,
              help="save a checkpoint and exit after this many steps, as a kill would (tests)")
def finetune_command(config_path: str, resume: bool, overrides: tuple[str, ...], stop_after: int | None) -> None:
    """Fine-tune a 4M model's encoder (a fourm or released checkpoint) on a classification or dense task.

    Classification reads a folder of class sub-folders; dense tasks read a fourm store whose target
    modality's raw values are the labels. Multi-process: `accelerate launch -m fourm_trainers.finetune
    --config CFG`. FOURM_MAX_STEPS=N caps max_steps.
    """
    import json
    import logging

    import attrs

    from .cli_train import max_steps_cap
    from .finetune.config import FinetuneConfig

    logging.basicConfig(level=os.environ.get("FOURM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = FinetuneConfig.from_yaml(config_path, overrides)
    cap = max_steps_cap()
    if cap is not None and cfg.max_steps > cap:
        cfg = attrs.evolve(cfg, max_steps=cap)
    from .finetune import finetune

    click.echo(json.dumps(finetune(cfg, resume=resume, stop_after=stop_after)))


def register_commands(cli: click.Group) -> None:
    """Add ``fourm finetune`` to ``cli``."""
    cli.add_command(finetune_command)
