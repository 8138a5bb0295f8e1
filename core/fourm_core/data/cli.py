"""``fourm ingest``, ``fourm label``, ``fourm tokenize``, ``fourm inspect``.

No torch / numpy / zarr import at module level: the command bodies import :mod:`fourm_core.data.jobs`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import click


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_weights(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{v!r} must look like NAME=PATH_OR_HUB_ID (e.g. depth=/models/dpt)",
                                     param_hint="--weights")
        out[name.strip()] = path.strip()
    return out


def _pairs(values: tuple[str, ...], option: str, example: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict."""
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.BadParameter(f"{v!r} must look like NAME=VALUE (e.g. {example})", param_hint=option)
        out[name.strip()] = value.strip()
    return out


def _reader_options(values: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """``MODALITY.KEY=VALUE`` options as ``{modality: {key: value}}`` (VALUE parsed as JSON when it parses)."""
    out: dict[str, dict[str, object]] = {}
    for key, text in _pairs(values, "--reader-option", "depth.scale=0.001").items():
        mod, dot, arg = key.partition(".")
        if not dot or not mod or not arg:
            raise click.BadParameter(f"{key!r} must look like MODALITY.KEY (e.g. depth.scale)", param_hint="--reader-option")
        try:
            value: object = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(mod, {})[arg] = value
    return out


def _existing_store(store: str) -> str:
    """A local STORE that a job reads must exist (a job must not leave an empty ``STORE/`` behind)."""
    if "://" not in store and not (Path(store) / "zarr.json").is_file():
        what = "does not exist" if not Path(store).exists() else "is not a fourm store (it has no zarr.json)"
        raise click.BadParameter(f"{store!r} {what}; create the store with `fourm ingest PHOTOS/ {store}`",
                                 param_hint="STORE")
    return store


@contextlib.contextmanager
def _readable(store: str) -> Iterator[None]:
    """A store whose JSON (``zarr.json`` metadata, json values) does not parse is named, with the repair."""
    try:
        yield
    except json.JSONDecodeError as exc:
        from .errors import CorruptDataError

        raise CorruptDataError(f"store {store}: a zarr.json metadata file (or a stored JSON value) is not valid JSON "
                               f"({exc}); restore the store from a copy or re-create it (`fourm ingest --overwrite`)"
                               ) from exc


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


_force_option = click.option(
    "--force", is_flag=True,
    help="take over the store's writer lock from another job (only when that job is gone, e.g. on a dead machine)")


def register_commands(cli: click.Group) -> None:
    """Add the dataset commands to ``cli``."""

    @cli.command("ingest")
    @click.argument("paths", nargs=-1, required=True, metavar="[SRC] STORE")
    @click.option("--samples-per-shard", default=64, show_default=True, type=click.IntRange(min=1))
    @click.option("--raw-size", default=256, show_default=True, type=click.IntRange(min=8),
                  help="short side resized to this, then centre-cropped")
    @click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
                  help="decode images in this many processes")
    @click.option("--labels", "label_dirs", multiple=True, metavar="MODALITY=DIR",
                  help="with a folder SRC: label files matched by file stem (or a COCO-style .json file)")
    @click.option("--reader-option", "reader_opts", multiple=True, metavar="MODALITY.KEY=VALUE",
                  help="keyword argument of a modality's reader (VALUE as JSON if it parses), e.g. depth.scale=0.001")
    @click.option("--hf", metavar="NAME_OR_PATH", help="read a Hugging Face `datasets` dataset instead of SRC")
    @click.option("--split", default="train", show_default=True, help="split of the --hf dataset")
    @click.option("--image-column", default="image", show_default=True, help="image column of the --hf dataset")
    @click.option("--column", "columns", multiple=True, metavar="MODALITY=COLUMN",
                  help="a --hf column holding labels of a modality, e.g. caption=text")
    @click.option("--txt-modality", default="caption", show_default=True,
                  help="modality of the .txt members of webdataset shards")
    @click.option("--overwrite", is_flag=True, help="replace an existing store")
    @_force_option
    def ingest_cmd(paths: tuple[str, ...], samples_per_shard: int, raw_size: int, workers: int,
                   label_dirs: tuple[str, ...], reader_opts: tuple[str, ...], hf: str | None, split: str,
                   image_column: str, columns: tuple[str, ...], txt_modality: str, overwrite: bool,
                   force: bool) -> None:
        """Read SRC into STORE: its images into the rgb modality, its real labels into their modalities
        (resumable: rerun the same command after an interruption; distributed under accelerate launch).

        SRC is a folder of images (jpg/png/webp, recursively; --labels adds label folders), a manifest (.csv or
        .jsonl: an `image` column and one column per modality), or webdataset shards (shard.tar,
        'shard-{000..009}.tar', an fsspec URL); with --hf, only STORE is given."""
        want = 1 if hf else 2
        if len(paths) != want:
            raise click.UsageError("give SRC and STORE" if not hf else "with --hf give only STORE (the dataset is "
                                   "the source)")
        src, store = (None, paths[0]) if hf else paths
        if src is not None and "://" not in src and not any(c in src for c in "{,") and not Path(src).exists():
            raise click.BadParameter(f"{src!r} does not exist", param_hint="SRC")
        _setup_logging()
        from .jobs import ingest
        from .sources import open_source

        source = open_source(src, labels=_pairs(label_dirs, "--labels", "depth=/data/depth"), hf=hf, split=split,
                             image_column=image_column, columns=_pairs(columns, "--column", "caption=text"),
                             txt_modality=txt_modality)
        report = ingest(None, store, samples_per_shard=samples_per_shard, raw_size=raw_size, overwrite=overwrite,
                        workers=workers, force=force, source=source, reader_options=_reader_options(reader_opts))
        labels = f" with labels of {', '.join(report.labels)}" if report.labels else ""
        click.echo(f"ingested {report.num_samples} images{labels} into {store} in {report.seconds:.1f} s "
                   f"({report.images_per_second:.1f} images/s); skipped {len(report.skipped)} unreadable file(s)")
        for path, reason in report.skipped:
            click.echo(f"  skipped {path}: {reason}")

    @cli.command("label")
    @click.argument("store")
    @click.option("--modalities", "-m", required=True, help="comma-separated modality names")
    @click.option("--overwrite", is_flag=True, help="relabel from scratch")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None, help="default: the labeler's own")
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--weights", multiple=True, metavar="NAME=PATH", help="weights of a labeler (hub id or local dir)")
    @click.option("--no-progress", is_flag=True)
    @_force_option
    def label_cmd(store: str, modalities: str, overwrite: bool, batch_size: int | None, device: str,
                  weights: tuple[str, ...], no_progress: bool, force: bool) -> None:
        """Run the modalities' pseudo-labelers over STORE (resumable; distributed under accelerate/torchrun)."""
        from fourm_registry.cli import check_device

        _existing_store(store)
        check_device(device)
        _setup_logging()
        from .jobs import label

        with _readable(store):
            reports = label(store, _split(modalities), overwrite=overwrite, batch_size=batch_size, device=device,
                            weights=_parse_weights(weights), progress=not no_progress, force=force)
        for r in reports.values():
            rate = r.samples / r.seconds if r.seconds > 0 else 0.0
            click.echo(f"{r.modality}: {r.shards_done} shard(s) labeled, {r.shards_skipped} already complete, "
                       f"{r.samples} samples in {r.seconds:.1f} s ({rate:.1f} samples/s)")

    @cli.command("tokenize")
    @click.argument("store")
    @click.option("--modalities", "-m", required=True, help="comma-separated modality names")
    @click.option("--crops", default=1, show_default=True, type=click.IntRange(min=1),
                  help="crops per sample (crop 0 = centre)")
    @click.option("--tokenizers", "tokenizers_dir", required=True, type=click.Path(exists=True, file_okay=False),
                  help="tokenizer directory (fourm train-tokenizer --out DIR)")
    @click.option("--seed", default=0, show_default=True, type=int, help="seed of the random crops")
    @click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--overwrite", is_flag=True, help="re-tokenize these modalities from scratch")
    @click.option("--overwrite-crops", is_flag=True,
                  help="draw new crops (--crops/--seed); deletes every modality's tokens")
    @click.option("--no-progress", is_flag=True)
    @_force_option
    def tokenize_cmd(store: str, modalities: str, crops: int, tokenizers_dir: str, seed: int, batch_size: int,
                     device: str, overwrite: bool, overwrite_crops: bool, no_progress: bool, force: bool) -> None:
        """Tokenize CROPS crops per sample of the modalities (resumable; distributed)."""
        from fourm_registry.cli import check_device

        _existing_store(store)
        check_device(device)
        _setup_logging()
        from .jobs import tokenize

        with _readable(store):
            reports = tokenize(store, _split(modalities), crops=crops, tokenizers_dir=tokenizers_dir, seed=seed,
                               overwrite=overwrite, batch_size=batch_size, device=device, progress=not no_progress,
                               overwrite_crops=overwrite_crops, force=force)
        for r in reports.values():
            click.echo(f"{r.modality}: {r.shards_done} shard(s) tokenized, {r.shards_skipped} already complete")

    @cli.command("inspect")
    @click.argument("store")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    @click.option("--repair", is_flag=True, help="mark damaged shards not done, so that their job redoes them")
    @_force_option
    def inspect_cmd(store: str, as_json: bool, repair: bool, force: bool) -> None:
        """Per modality: complete samples, dtype, shape, bytes on disk, sha256 of the values. Every done shard is
        checked against the record written with it; damaged shards make the command fail (exit status 2) unless
        --repair marks them not done."""
        _existing_store(store)
        from .jobs import damage_error, format_inspect, inspect_store, repair_store

        with _readable(store):
            info = repair_store(store, force=force) if repair else inspect_store(store)
        click.echo(json.dumps(info, indent=2) if as_json else format_inspect(info))
        if info["problems"] and not repair:
            raise damage_error(store, info["problems"])
