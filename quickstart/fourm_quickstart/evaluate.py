"""Stage 5: any-to-any generation on the held-out crops, each task's figures (:mod:`.scores`), the PNG grids.

Two calls of :class:`fourm_core.pipeline.AnyToAny`: rgb → the ``rgb_targets`` (canny_edge, color_palette,
metadata: those trained) and canny_edge + color_palette → rgb. Every task is scored against the labelers'
ground truth on the held-out crops, next to a trivial baseline and the tokenizer oracle (the truth through its
tokenizer); the ``auxiliary`` ones are scored but not drawn, and reported apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fourm_registry import ModalitySet

from . import scores
from .config import AUXILIARY_REASONS, RGB_TARGETS, QuickstartConfig, labeler_kwargs
from .render import Column, stack, task_grid

EDGES = "canny_edge"
#: modalities whose labelers give the ground truth of the rgb → X task
SCORED = RGB_TARGETS
#: side of one tile of the PNG grids, pixels
TILE = 128
#: rows and tile size of the overview picture
OVERVIEW_ROWS, OVERVIEW_TILE = 3, 96
#: MaskGIT steps of the image targets
IMAGE_STEPS = 8


def generate_and_evaluate(model_dir: str, data: dict[str, Any], url: str, names: Sequence[str], out: Path,
                          cfg: QuickstartConfig) -> dict[str, Any]:
    """Run the any-to-any pipeline on the held-out crops, score every task, write one PNG grid per task."""
    from fourm_core.data import Store
    from fourm_core.generation import TargetConfig
    from fourm_core.pipeline import AnyToAny

    pipe = AnyToAny.from_pretrained(model_dir, device="cpu")
    mods = pipe.modalities
    rgb = data["eval_rgb"]
    truth = _ground_truth(mods, names, rgb, cfg)
    store = Store.open(url, "r")
    train = range(store.num_samples)
    show = min(cfg.show, len(rgb))
    tasks: dict[str, dict[str, Any]] = {}
    panels: list[tuple[str, list[Column], str]] = []
    pngs: list[str] = []
    res: dict[str, Any] = {"eval_crops": len(rgb), "held_out_photos": data["held_out_photos"]}

    # rgb → the configured targets (canny_edge, color_palette, metadata; greedy: the model's best guess)
    wanted = [n for n in SCORED if n in names and n in cfg.rgb_targets]
    if wanted:
        targets = [TargetConfig(modality=n, temperature=0.0, **({"steps": IMAGE_STEPS} if n == EDGES else {}))
                   for n in wanted]
        t = time.perf_counter()
        pred = _generate(pipe, {"rgb": rgb}, targets, cfg.seed)
        res["rgb_to_x_seconds"] = round(time.perf_counter() - t, 2)
        _rgb_to_x_tasks(pred, truth, rgb, show, store, train, mods, pipe, out, tasks, pngs, panels,
                        hidden=set(cfg.auxiliary))

    # canny_edge + color_palette → rgb
    cond: dict[str, Any] = {EDGES: truth[EDGES]}
    if "color_palette" in truth:
        cond["color_palette"] = truth["color_palette"]
    t = time.perf_counter()
    pred2 = _generate(pipe, cond, [TargetConfig(modality="tok_rgb", steps=IMAGE_STEPS, temperature=0.0)], cfg.seed)
    res["x_to_rgb_seconds"] = round(time.perf_counter() - t, 2)
    gen = [np.asarray(p) for p in pred2.raw["tok_rgb"]]
    hw = gen[0].shape[:2]
    recon = _through_tokenizer(pipe, "tok_rgb", rgb)
    task = " + ".join(cond) + " -> rgb"
    tasks[task] = scores.rgb_task(gen, rgb, scores.mean_image(store.read_raw("rgb", train), hw), recon)
    pngs.append(_draw(task, "edges_palette_to_rgb.png", tasks, out, [
        *(Column(f"input: {n}", n, v[:show]) for n, v in cond.items()),
        Column("4M prediction", "tok_rgb", gen[:show]),
        Column("truth (held-out photo)", "rgb", rgb[:show]),
        Column("tokenizer oracle", "tok_rgb", recon[:show])], mods, panels))
    res["auxiliary"] = {t: {**tasks.pop(t), "reason": AUXILIARY_REASONS.get(t, "trained, not shown")}
                        for t in list(tasks) if t in cfg.auxiliary}
    res["tasks"] = tasks
    res["all_beat_baseline"] = all(t["beats_baseline"] for t in tasks.values())
    res["pngs"] = pngs
    res["overview_png"] = _overview(panels, mods, out)
    return res


def _rgb_to_x_tasks(pred: Any, truth: dict[str, list[Any]], rgb: list[np.ndarray], show: int, store: Any,
                    train: range, mods: ModalitySet, pipe: Any, out: Path, tasks: dict[str, dict[str, Any]],
                    pngs: list[str], panels: list[tuple[str, list[Column], str]], hidden: set[str]) -> None:
    """Score the rgb → X tasks of one generation ``pred``; draw those not ``hidden``."""
    if EDGES in pred.raw:
        edge_oracle = _through_tokenizer(pipe, EDGES, truth[EDGES])
        tasks["rgb -> canny_edge"] = scores.edge_task(pred.raw[EDGES], truth[EDGES], edge_oracle)
        if "rgb -> canny_edge" not in hidden:
            pngs.append(_draw("rgb -> canny_edge", "rgb_to_edges.png", tasks, out, [
                Column("input: held-out photo", "rgb", rgb[:show]),
                Column("4M prediction", EDGES, pred.raw[EDGES][:show]),
                Column("truth (Canny edges)", EDGES, truth[EDGES][:show]),
                Column("tokenizer oracle", EDGES, edge_oracle[:show])], mods, panels))
    for name, task, fn, png in (("color_palette", "rgb -> color_palette", scores.palette_task, "rgb_to_palette.png"),
                                ("metadata", "rgb -> metadata", scores.metadata_task, "rgb_to_metadata.png")):
        if name not in pred.raw:
            continue
        oracle = _through_serializer(mods, name, truth[name])
        tasks[task] = fn(pred.raw[name], truth[name], store.read_raw(name, train), oracle)
        text = statistics_text if name == "metadata" else None
        if task in hidden:
            continue
        pngs.append(_draw(task, png, tasks, out, [
            Column("input: held-out photo", "rgb", rgb[:show]),
            Column("4M prediction", name, pred.raw[name][:show], text),
            Column("truth (labeler)", name, truth[name][:show], text)], mods, panels))


def _draw(task: str, file: str, tasks: dict[str, dict[str, Any]], out: Path, cols: list[Column],
          mods: ModalitySet, panels: list[tuple[str, list[Column], str]]) -> str:
    """Write one task's grid ``OUT/file``; remember its panel (title, columns, caption) in ``panels``."""
    rec = tasks[task]
    png = out / file
    task_grid(task_title(task, rec), cols, mods, caption=f"Good result: {rec['good_result']}.", tile=TILE).save(png)
    panels.append((task_title(task, rec), cols, f"Good result: {rec['good_result']}."))
    return str(png)


def _overview(panels: list[tuple[str, list[Column], str]], mods: ModalitySet, out: Path) -> str:
    """``OUT/overview.png``: the first rows of every task grid, small, one under the other (a 256-colour PNG)."""
    img = stack([task_grid(t, c, mods, caption=cap, tile=OVERVIEW_TILE, rows=OVERVIEW_ROWS) for t, c, cap in panels])
    png = out / "overview.png"
    img.quantize(256, dither=0).save(png, optimize=True)
    return str(png)


def statistics_text(raw: dict[str, Any]) -> str:
    """Image statistics one per line, ``key value`` (3 significant digits), in the labeler's key order."""
    return "\n".join(f"{k.replace('_', ' ')} {float(v):.3g}" for k, v in sorted(raw.items(), key=lambda kv: _key_rank(kv[0])))


def _key_rank(key: str) -> int:
    order = ("brightness", "contrast", "saturation", "colorfulness", "entropy", "sharpness", "edge_density")
    return order.index(key) if key in order else len(order)


def task_title(task: str, rec: dict[str, Any]) -> str:
    """The one-line headline of a task: its metric, the model's, baseline's and oracle's figures."""
    better = "higher" if rec["higher_is_better"] else "lower"
    return (f"{task} on held-out photos: {rec['metric']} ({better} is better): 4M {rec['model']:.3g} vs baseline "
            f"{rec['baseline']:.3g} ({rec['baseline_is']}), tokenizer oracle {rec['oracle']:.3g}; the 4M "
            f"{scores.verdict(rec)}")


def _ground_truth(mods: ModalitySet, names: Sequence[str], rgb: list[np.ndarray],
                  cfg: QuickstartConfig) -> dict[str, list[Any]]:
    """The labelers' output on the held-out crops (with the options the training store was labeled with), for
    the scored modalities that were trained."""
    truth: dict[str, list[Any]] = {}
    kwargs = labeler_kwargs(cfg, list(names))
    for n in names:
        spec = mods[n]
        if spec.labeler is not None and n in SCORED:
            truth[n] = list(spec.labeler.build(**kwargs.get(n, {}))({"rgb": rgb}))
    return truth


def _through_tokenizer(pipe: Any, name: str, raws: list[Any]) -> list[np.ndarray]:
    """``raws`` encoded by ``name``'s tokenizer and decoded again (the tokenizer oracle of an image target)."""
    tokens = pipe.encode_inputs({name: raws})[0][name]["tensor"]
    return [np.asarray(r) for r in pipe.codec(name).decode(tokens)]


def _through_serializer(mods: ModalitySet, name: str, raws: list[Any]) -> list[Any]:
    """``raws`` written as the sequence's text and parsed back (the oracle of a sequence target: the text keeps
    what its serializer keeps, e.g. binned statistics)."""
    ser = mods[name].serializer.build()
    return [ser.from_text(ser.to_text(r)) for r in raws]


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    lg = logging.getLogger(logger)
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(level)


def _generate(pipe: Any, inputs: dict[str, Any], targets: list[Any], seed: int) -> Any:
    """``pipe(inputs, targets)``; a sequence a briefly trained model got wrong (it does not parse) becomes the
    text ``"unparseable: ..."`` instead of failing the whole batch (the scores count it as the baseline)."""
    with _quiet("fourm_core.pipeline"):
        return pipe(inputs, targets=targets, seed=seed, decode_errors="text")
