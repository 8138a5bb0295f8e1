"""``fourm generate`` and ``fourm index``. No torch import at module level (``fourm --help`` stays fast)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _parse_in(items: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} must look like NAME=VALUE (e.g. rgb=photo.jpg or caption='a cat')",
                                     param_hint="--in")
        out.append((name.strip(), value))
    return out


def _parse_cond(items: tuple[str, ...]) -> list[tuple[float, str, str]]:
    """``--cond WEIGHT:NAME=VALUE`` → ``(weight, name, value)``."""
    out = []
    for item in items:
        weight, sep, rest = item.partition(":")
        try:
            w = float(weight)
        except ValueError:
            w = None
        name, sep2, value = rest.partition("=")
        if not sep or w is None or not sep2 or not name.strip():
            raise click.BadParameter(f"{item!r} must look like WEIGHT:NAME=VALUE (e.g. 3:caption='a dog' or "
                                     f"-1:caption='a cat')", param_hint="--cond")
        out.append((w, name.strip(), value))
    return out


def _load_mask(name: str, value: str) -> Any:
    """``--given-mask NAME=FILE``: a .npy array or an image (nonzero = generate)."""
    import numpy as np

    path = Path(value)
    if not path.is_file():
        raise click.BadParameter(f"{name}={value}: the mask file does not exist", param_hint="--given-mask")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False) != 0
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127
    except OSError as exc:
        raise click.BadParameter(f"{name}={value}: cannot read the mask image ({' '.join(str(exc).split())})",
                                 param_hint="--given-mask") from None


def _load_value(spec: Any, name: str, value: str) -> Any:
    """Turn the text of ``--in name=value`` into a raw input for the modality ``spec``."""
    import numpy as np

    path = Path(value)
    is_file = path.is_file()
    from .kinds import adapter_for

    kind = adapter_for(spec)
    if kind.raw_from_file:
        if not is_file:
            raise click.BadParameter(f"{name}={value}: the {spec.kind!r} modality {name!r} takes a file (image or .npy), "
                                     f"and {value!r} does not exist", param_hint="--in")
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            from PIL import Image, ImageOps

            try:
                with Image.open(path) as img:
                    img = ImageOps.exif_transpose(img)
                    return img.convert("RGB") if kind.rgb_input or img.mode in ("RGBA", "P", "CMYK") else img.copy()
            except OSError as exc:  # PIL's UnidentifiedImageError and truncated files are OSErrors
                raise click.BadParameter(f"{name}={value}: cannot read the image ({' '.join(str(exc).split())}); "
                                         f"pass a readable image file", param_hint="--in") from None
        raise click.BadParameter(f"{name}={value}: unsupported file type {path.suffix!r}; use an image "
                                 f"({', '.join(sorted(_IMAGE_SUFFIXES))}) or a .npy array", param_hint="--in")
    # sequence: a .json / .txt file, inline JSON, or the literal text
    if is_file and path.suffix.lower() == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    if is_file and path.suffix.lower() == ".txt":
        return path.read_text(encoding="utf-8").strip()
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


def _save_raw(raw: Any, base: Path) -> Path:
    """Write one raw output: arrays → .npy, text → .txt, JSON values → .json."""
    import numpy as np
    import torch

    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if isinstance(raw, np.ndarray):
        path = base.with_suffix(".npy")
        np.save(path, raw)
    elif isinstance(raw, str):
        path = base.with_suffix(".txt")
        path.write_text(raw + "\n", encoding="utf-8")
    else:
        path = base.with_suffix(".json")
        path.write_text(json.dumps(raw, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)),
                        encoding="utf-8")
    return path


def _check_model_arg(model: str) -> None:
    """``--model``: an existing directory / ``.safetensors`` file, or a hub id (``org/name``, nothing of it on
    disk); a path that is neither is a usage error, not a failed download."""
    path = Path(model)
    if path.exists():
        return
    parts = model.split("/")
    looks_like_hub_id = (len(parts) == 2 and all(parts) and not model.startswith((".", "~"))
                         and not Path(parts[0]).exists() and not model.endswith(".safetensors"))
    if not looks_like_hub_id:
        raise click.BadParameter(f"{model!r} does not exist; pass a checkpoint directory (e.g. runs/debug/final, "
                                 f"written by `fourm train`), a model.safetensors file or a hub id (org/name)",
                                 param_hint="--model")


@contextlib.contextmanager
def _pipeline_warnings_muted() -> Iterator[None]:
    """Drop the pipeline's own decode / visualizer warnings: ``fourm generate`` reports each such output once."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = str(record.msg)
            return not (msg.startswith("generated %r row could not be decoded") or msg.startswith("visualizer of"))

    logger, drop = logging.getLogger("fourm_core.pipeline"), _Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _save_picture(spec: Any, stem: str, raw: Any, path: Path) -> None:
    """One PNG per output: the plugin's visualizer, or the output's text drawn on a tile when it cannot
    draw it (a sequence that did not parse, a failing visualizer); a warning says which and why."""
    from .pipeline import draw_raw, text_tile

    unparseable = isinstance(raw, str) and raw.startswith("unparseable:")
    img = None
    if unparseable:
        click.echo(f"warning: {stem!r}: the generated sequence could not be parsed ({raw[len('unparseable:'):].strip()});"
                   f" its text, token ids and a picture of the text are saved", err=True)
        img = text_tile(raw, 256)
    elif spec.visualizer is not None:
        try:
            img = spec.visualizer.load()(raw)
        except Exception as exc:  # noqa: BLE001 - the raw output is saved; say why the picture is its text
            click.echo(f"warning: visualizer of {stem!r} failed ({type(exc).__name__}: {exc}); its PNG shows the "
                       f"raw output as text", err=True)
            img = text_tile(str(raw), 256)
    if img is None:
        img = draw_raw(spec, raw, 256)
    img.convert("RGB").save(path)


def register_commands(cli: click.Group) -> None:
    """Add ``generate`` and ``index`` to ``cli``."""

    @cli.command("generate")
    @click.option("--model", "model_dir", required=True, help="checkpoint directory (or hub id) with tokenizers/")
    @click.option("--in", "inputs", multiple=True, metavar="NAME=VALUE",
                  help="an input: rgb=photo.jpg, depth=depth.npy, caption='a cat on a sofa', det=boxes.json "
                       "(none at all: unconditional generation)")
    @click.option("--out", "targets", required=True, help="comma-separated targets in generation order, e.g. depth,caption")
    @click.option("--save", "save_dir", required=True, type=click.Path(file_okay=False), help="output directory")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--steps", type=int, default=None, help="MaskGIT/ROAR steps (default per kind)")
    @click.option("--temperature", type=float, default=None, help="sampling temperature (0 = greedy)")
    @click.option("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = none)")
    @click.option("--guidance-schedule", type=click.Choice(["constant", "cosine"]), default=None,
                  help="guidance per step: constant, or cosine (rises from 1 to --guidance)")
    @click.option("--token-schedule", type=click.Choice(["cosine", "linear", "cosine_late"]), default=None,
                  help="tokens per MaskGIT/ROAR step (default: cosine for MaskGIT, linear for ROAR)")
    @click.option("--temperature-schedule", default=None, metavar="NAME",
                  help="constant, linear or onex:MIN:POWER (e.g. onex:0.5:0.5)")
    @click.option("--cond", "conds", multiple=True, metavar="WEIGHT:NAME=VALUE",
                  help="a weighted condition, repeatable; negative weights steer away: --cond 3:caption='a dog' "
                       "--cond -1:caption='a cat'")
    @click.option("--given", "givens", multiple=True, metavar="NAME=VALUE",
                  help="a partial target: caption='a photo of' (continued), caption='a [S_1] on a [S_2]' "
                       "(filled in), or tok_rgb=photo.jpg with --given-mask")
    @click.option("--given-mask", "given_masks", multiple=True, metavar="NAME=FILE",
                  help="where a given image target is generated (.npy or image; nonzero/white = generate)")
    @click.option("--batch-size", type=int, default=None, help="rows to generate without inputs (unconditional)")
    @click.option("--pixel-twins", is_flag=True,
                  help="an rgb input also feeds its tokenized twin (tok_rgb), doubling the encoder tokens")
    @click.option("--top-k", type=float, default=None, help="keep the k most likely tokens (or a fraction if < 1)")
    @click.option("--top-p", type=float, default=None, help="nucleus sampling mass")
    @click.option("--scheme", type=click.Choice(["maskgit", "roar"]), default=None,
                  help="scheme for image/vector targets (sequences are always autoregressive)")
    @click.option("--tokenizers", "tok_dir", default=None, help="tokenizer directory (default: MODEL/tokenizers)")
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--no-grammar", is_flag=True,
                  help="decode structured sequences (det, palettes, metadata, ...) without their plugins' grammars "
                       "(default: constrained, so every output parses)")
    @click.option("--strict", is_flag=True,
                  help="fail when a generated sequence cannot be parsed (default: save it as 'unparseable: ...' text "
                       "and keep the other outputs)")
    def generate_cmd(model_dir, inputs, targets, save_dir, seed, steps, temperature, guidance, guidance_schedule,
                     token_schedule, temperature_schedule, conds, givens, given_masks, batch_size, pixel_twins,
                     top_k, top_p, scheme, tok_dir, device, no_grammar, strict):
        """Generate TARGETS from the given inputs; writes raw outputs (npy/json/txt), the token ids
        (<name>.tokens.npy), a PNG per output and grid.png."""
        from fourm_registry.cli import check_device, context

        from .pipeline import AnyToAny

        _check_model_arg(model_dir)
        if tok_dir is not None and not Path(tok_dir).is_dir():
            raise click.BadParameter(f"{tok_dir!r} is not a directory; pass the tokenizer directory of "
                                     f"`fourm train-tokenizer --out DIR` (default: MODEL/tokenizers)",
                                     param_hint="--tokenizers")
        check_device(device)
        with context(f"--model {model_dir}"):
            pipe = AnyToAny.from_pretrained(model_dir, device=device, tokenizers=tok_dir)
        raw_inputs = {}
        for name, value in _parse_in(inputs):
            canonical = pipe.resolve(name)
            raw_inputs[canonical] = _load_value(pipe.modalities[canonical], name, value)
        tgt = [t.strip() for t in targets.split(",") if t.strip()]
        if not tgt:
            raise click.UsageError("--out names no target")
        conditions = []
        for weight, name, value in _parse_cond(conds):
            canonical = pipe.resolve(name)
            conditions.append(({canonical: _load_value(pipe.modalities[canonical], name, value)}, weight))
        masks = dict(_parse_in(given_masks))
        given = {}
        for name, value in _parse_in(givens):
            canonical = pipe.resolve(name, as_target=True)
            spec = pipe.modalities[canonical]
            from .kinds import adapter_for

            if adapter_for(spec).autoregressive:
                given[canonical] = value
            elif name not in masks:
                raise click.UsageError(f"--given {name}=... needs --given-mask {name}=FILE (where to generate)")
            else:
                given[canonical] = {"value": _load_value(spec, name, value), "mask": _load_mask(name, masks[name])}
        overrides = {"steps": steps, "temperature": temperature, "guidance": guidance, "top_p": top_p,
                     "scheme": scheme, "guidance_schedule": guidance_schedule, "token_schedule": token_schedule,
                     "temperature_schedule": temperature_schedule, "grammar": False if no_grammar else None}
        if top_k is not None:
            overrides["top_k"] = int(top_k) if top_k >= 1 else float(top_k)
        with _pipeline_warnings_muted():  # this command prints one warning per output that did not decode
            out = pipe(raw_inputs, tgt, seed=seed, decode_errors="raise" if strict else "text", given=given or None,
                       conditions=conditions or None, batch_size=batch_size, pixel_twins=pixel_twins,
                       **{k: v for k, v in overrides.items() if v is not None})
            save = Path(save_dir)
            save.mkdir(parents=True, exist_ok=True)
            import numpy as np

            for name in out:
                np.save(save / f"{name}.tokens.npy", out.tokens[name].detach().cpu().numpy())
                rows = [(name, out[name])] if not out.batched else [(f"{name}_{i}", r) for i, r in enumerate(out[name])]
                for stem, raw in rows:
                    path = _save_raw(raw, save / stem)
                    click.echo(f"{stem}: {path}")
                    _save_picture(pipe.modalities[name], stem, raw, save / f"{stem}.png")
            pipe.render(out).save(save / "grid.png")
        click.echo(f"grid: {save / 'grid.png'}")

    @cli.command("index")
    @click.argument("store")
    @click.option("--modality", required=True, help="a global-embedding modality, e.g. dinov2_global")
    @click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="index file (.npz)")
    @click.option("--batch-size", type=int, default=256, show_default=True)
    def index_cmd(store, modality, out_path, batch_size):
        """Build a nearest-neighbour (cosine) index of MODALITY's vectors in STORE, for `AnyToAny.search`."""
        from .retrieval import build_index

        index = build_index(store, modality, batch_size=batch_size)
        path = index.save(out_path)
        click.echo(json.dumps({"index": str(path), "modality": index.modality, "vectors": len(index),
                               "dim": index.dim, "store": store}))
