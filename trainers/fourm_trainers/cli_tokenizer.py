"""``fourm train-tokenizer``. No torch import at module level (``fourm --help`` stays fast)."""

from __future__ import annotations

import json

import click


def register_commands(cli: click.Group) -> None:
    """Add ``train-tokenizer`` to ``cli``."""

    @cli.command("train-tokenizer")
    @click.option("--modality", required=True, help="modality name (or alias); 'text' trains the shared text tokenizer")
    @click.option("--data", required=True, help="a fourm zarr store (STORE.zarr / URL) or, for rgb, a folder of images")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="tokenizer directory to write into")
    @click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="YAML: steps, batch_size, lr, crop_scale, save_every, tokenizer: {family hyper-parameters}, ...")
    @click.option("--resume", is_flag=True, help="continue from the latest checkpoint under OUT/_runs/<modality>")
    @click.option("--steps", type=int, default=None, help="override the config's steps")
    @click.option("--batch-size", type=int, default=None, help="override the config's batch_size (per process)")
    @click.option("--cpu", is_flag=True, default=None, help="train on the CPU even if a GPU is available")
    def train_tokenizer_cmd(modality, data, out, config_path, resume, steps, batch_size, cpu):
        """Train the tokenizer of one modality (writes OUT/<modality>/ or OUT/text/tokenizer.json)."""
        from .tokenizer_train import TokenizerTrainConfig, train_tokenizer

        cfg = TokenizerTrainConfig.from_yaml(config_path, steps=steps, batch_size=batch_size, cpu=cpu)
        name = modality
        if modality != "text":
            from fourm_registry import get_modalities

            name = get_modalities().resolve(modality)
        summary = train_tokenizer(name, data, out, config=cfg, resume=resume)  # fourm errors: one `error:` line
        click.echo(json.dumps(summary, indent=2))
