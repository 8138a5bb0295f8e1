"""``fourm evaluate``. No torch import at module level (``fourm --help`` stays fast)."""

from __future__ import annotations

import click


def register_commands(cli: click.Group) -> None:
    """Add ``evaluate`` to ``cli``."""

    @cli.command("evaluate")
    @click.option("--model", "model_dir", required=True, help="checkpoint directory (or hub id) with tokenizers/")
    @click.option("--data", "store", required=True, help="the store holding the inputs and the targets' references")
    @click.option("--inputs", required=True, help="comma-separated input modalities, e.g. rgb")
    @click.option("--targets", required=True, help="comma-separated targets in generation order, e.g. depth,semseg")
    @click.option("--samples", type=click.IntRange(min=1), default=None,
                  help="evaluate the first N samples (default: all)")
    @click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
                  help="directory of the predictions and reports (default: eval-<store name>); a rerun resumes")
    @click.option("--oracle", is_flag=True,
                  help="also score decode(encode(truth)) through each target's tokenizer: what a perfect model reaches")
    @click.option("--no-baseline", is_flag=True, help="skip the trivial constant-prediction baseline")
    @click.option("--steps", type=click.IntRange(min=1), default=None, help="MaskGIT/ROAR steps (default per kind)")
    @click.option("--temperature", type=click.FloatRange(min=0), default=None,
                  help="sampling temperature (0 = greedy; default per kind)")
    @click.option("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = none)")
    @click.option("--max-new-tokens", type=click.IntRange(min=1), default=None, help="longest generated sequence")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
    @click.option("--tokenizers", "tok_dir", default=None, help="tokenizer directory (default: MODEL/tokenizers)")
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--overwrite", is_flag=True, help="recompute the predictions already in --out")
    @click.option("--no-grids", is_flag=True, help="skip the PNG grids")
    @click.option("--no-progress", is_flag=True)
    def evaluate_cmd(model_dir, store, inputs, targets, samples, out_dir, oracle, no_baseline, steps, temperature,
                     guidance, max_new_tokens, seed, batch_size, tok_dir, device, overwrite, no_grids, no_progress):
        """Generate TARGETS from INPUTS over a store and score them against the store's own values: writes
        metrics.json, metrics.md, samples.jsonl and grid_<target>.png (best / median / worst samples) in
        --out. Resumable; distributed under `accelerate launch`."""
        from pathlib import Path

        from fourm_registry.cli import check_device

        from .cli_generate import _check_model_arg
        from .data.cli import _existing_store, _readable, _setup_logging

        _check_model_arg(model_dir)
        try:
            _existing_store(store)
        except click.BadParameter as exc:
            exc.param_hint = "--data"
            raise
        if tok_dir is not None and not Path(tok_dir).is_dir():
            raise click.BadParameter(f"{tok_dir!r} is not a directory; pass the tokenizer directory of "
                                     f"`fourm train-tokenizer --out DIR` (default: MODEL/tokenizers)",
                                     param_hint="--tokenizers")
        check_device(device)
        _setup_logging()
        from .evaluation import evaluate

        out = Path(out_dir) if out_dir else Path(f"eval-{Path(store.rstrip('/')).stem}")
        options = {"guidance": guidance, "max_new_tokens": max_new_tokens}
        with _readable(store):
            res = evaluate(model_dir, store, inputs=inputs, targets=targets, samples=samples, out=out, oracle=oracle,
                           baseline=not no_baseline, steps=steps, temperature=temperature, seed=seed,
                           batch_size=batch_size, device=device, tokenizers=tok_dir, overwrite=overwrite,
                           progress=not no_progress, grids=not no_grids,
                           options={k: v for k, v in options.items() if v is not None})
        if res is None:  # not process 0 of a distributed run
            return
        resumed = {m: c for m, c in res.computed.items() if c}
        click.echo(res.markdown())
        click.echo(f"chunks computed: {resumed or 'none (all resumed)'}")
        click.echo(f"metrics: {out / 'metrics.json'}  table: {out / 'metrics.md'}  per sample: {out / 'samples.jsonl'}")
        for name, entry in res.metrics["targets"].items():
            if "grid" in entry:
                click.echo(f"grid {name}: {out / entry['grid']}")
