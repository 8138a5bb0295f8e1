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
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="YAML: steps, batch_size, lr, crop_scale, save_every, tokenizer: {family hyper-parameters}, ...")
    @click.option("--resume", is_flag=True, help="continue from the latest checkpoint under OUT/_runs/<modality>")
    @click.option("--steps", type=click.IntRange(min=1), default=None, help="override the config's steps")
    @click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
                  help="train for about this wall time instead of a step count (the rate is measured first)")
    @click.option("--small", is_flag=True,
                  help="a small architecture (one-block ViT at 112 px, small vocabulary) that trains on a CPU in "
                       "minutes; the token grid stays the modality's")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="override the config's batch_size (per process)")
    @click.option("--cpu", is_flag=True, default=None, help="train on the CPU even if a GPU is available")
    def train_tokenizer_cmd(modality, data, out, config_path, resume, steps, minutes, small, batch_size, cpu):
        """Train the tokenizer of one modality (writes OUT/<modality>/ or OUT/text/tokenizer.json).

        FOURM_MAX_STEPS=N caps the steps (also those of --minutes)."""
        import dataclasses
        from pathlib import Path

        from .cli_train import max_steps_cap
        from .tokenizer_budget import SMALL_LR, small_tokenizer_overrides, train_tokenizer_for
        from .tokenizer_train import TokenizerTrainConfig, TokenizerTrainError, train_tokenizer

        if config_path is not None and not Path(config_path).is_file():
            raise TokenizerTrainError(f"--config {config_path!r} does not exist: pass a tokenizer training YAML")
        if minutes is not None and (steps is not None or resume):
            raise click.UsageError("--minutes starts a new run of a measured length: it takes neither --steps nor "
                                   "--resume (continue a run with --resume --steps N)")
        cap = max_steps_cap()
        cfg = TokenizerTrainConfig.from_yaml(config_path, steps=steps, batch_size=batch_size, cpu=cpu)
        name = modality
        if modality != "text":
            from fourm_registry import get_modalities

            spec = get_modalities()[modality]
            name = spec.name
            if small:  # the config's own tokenizer: keys win; a small model takes a larger default step size
                lr = SMALL_LR if cfg.lr == TokenizerTrainConfig.lr else cfg.lr
                cfg = dataclasses.replace(cfg, lr=lr, tokenizer={**small_tokenizer_overrides(spec), **dict(cfg.tokenizer)})
        if minutes is not None and modality != "text":
            summary = train_tokenizer_for(name, data, out, minutes, config=cfg, max_steps=cap)
        else:
            if cap is not None and cfg.steps > cap:
                cfg = dataclasses.replace(cfg, steps=cap)
            summary = train_tokenizer(name, data, out, config=cfg, resume=resume)  # fourm errors: one `error:` line
        click.echo(json.dumps(summary, indent=2))
