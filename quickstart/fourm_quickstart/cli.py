"""``fourm quickstart``: the README's first command. No torch (or numpy) import at module level (``fourm --help``)."""

from __future__ import annotations

import click


@click.command("quickstart")
@click.option("--out", default="quickstart-out", show_default=True, type=click.Path(file_okay=False),
              help="directory for the store, tokenizers, model, PNG grids and summary.json")
@click.option("--minutes", default=9.0, show_default=True, type=float,
              help="wall-time budget of the whole run (tokenizer and 4M training are time-boxed to fit)")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of crops, training and sampling")
@click.option("--samples", default=384, type=int, hidden=True, help="training crops (tests use fewer)")
@click.option("--eval-crops", default=8, type=int, hidden=True, help="evaluation crops per held-out photo")
@click.option("--steps", default=None, type=int, hidden=True,
              help="exact steps of every tokenizer and the 4M instead of the time-boxed counts (tests)")
@click.option("--tokenizer-steps", default=None, type=int, hidden=True,
              help="exact steps of every tokenizer (overrides --steps for them)")
@click.option("--train-steps", default=None, type=int, hidden=True,
              help="exact steps of the 4M (overrides --steps for it)")
@click.option("--rgb-targets", default="canny_edge,color_palette", hidden=True,
              help="comma-separated modalities the 4M learns from rgb (canny_edge, color_palette, metadata)")
@click.option("--show-all", is_flag=True, hidden=True,
              help="show and count the rgb -> X tasks too (by default auxiliary: trained, scored, not shown)")
@click.option("--no-model-labelers", is_flag=True, help="skip model-based labelers even if their weights are cached")
def quickstart_cmd(out, minutes, seed, samples, eval_crops, steps, tokenizer_steps, train_steps, rgb_targets,
                   show_all, no_model_labelers):
    """Build a store from sample photos, label, train tokenizers and a small 4M, generate any-to-any.

    Runs offline on a CPU in about MINUTES minutes; writes OUT/*.png and OUT/summary.json.
    """
    import logging

    from fourm_registry import FourmError

    from .config import QuickstartConfig
    from .run import run_quickstart

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        targets = tuple(n.strip() for n in rgb_targets.split(",") if n.strip())
        cfg = QuickstartConfig(out=out, minutes=minutes, seed=seed, samples=samples, eval_crops=eval_crops,
                               steps=steps, tokenizer_steps=tokenizer_steps, train_steps=train_steps,
                               use_model_labelers=not no_model_labelers, rgb_targets=targets,
                               **({"auxiliary": ()} if show_all else {}))
        run_quickstart(cfg, echo=click.echo)
    except FourmError as exc:
        raise click.ClickException(str(exc)) from exc


def register_commands(cli: click.Group) -> None:
    """Add ``quickstart`` to ``cli``."""
    cli.add_command(quickstart_cmd)
