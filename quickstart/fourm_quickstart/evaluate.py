"""Stage 5: any-to-any generation on the held-out crops, its quality against trivial baselines, the PNG grids.

Two tasks through :class:`fourm_core.pipeline.AnyToAny`: rgb → canny_edge (+ color_palette, metadata when
trained) and canny_edge (+ color_palette) → rgb. Quality figures: edge-token accuracy against predicting the
most frequent training token; edge-pixel F1 (``fourm_canny_edge.metrics``) against marking every pixel an
edge; palette distance (``fourm_color_palette.metrics``) against one fixed palette, the training medoid; how
many palettes / metadata records parse; the mean absolute error of the generated rgb.
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

from .config import OPTIONAL, QuickstartConfig
from .render import grey_images, render_columns, side_by_side

EDGES = "canny_edge"
#: modalities whose labelers give the ground truth of the rgb → X task
SCORED = (EDGES, *OPTIONAL)
#: training palettes the fixed-palette baseline is chosen from (an evenly spaced subset: the medoid is quadratic)
MEDOID_CANDIDATES = 96
#: side of one tile of the PNG grids, pixels
TILE = 160


def generate_and_evaluate(model_dir: str, data: dict[str, Any], url: str, names: Sequence[str], out: Path,
                          cfg: QuickstartConfig) -> dict[str, Any]:
    """Run the any-to-any pipeline on the held-out crops, write the PNG grids, measure quality."""
    from fourm_core.generation import TargetConfig
    from fourm_core.pipeline import AnyToAny

    pipe = AnyToAny.from_pretrained(model_dir, device="cpu")
    rgb = data["eval_rgb"]
    truth = _ground_truth(pipe.modalities, names, rgb)
    results: dict[str, Any] = {"eval_crops": len(rgb), "held_out_photos": data["held_out_photos"], "pngs": []}
    show = min(cfg.show, len(rgb))

    # rgb → canny_edge (+ color_palette, metadata)
    targets = [TargetConfig(modality=EDGES, steps=8, temperature=0.0)]
    targets += [TargetConfig(modality=n, temperature=0.0) for n in OPTIONAL if n in names]
    t = time.perf_counter()
    pred = _generate(pipe, {"rgb": rgb}, targets, cfg.seed)
    results["rgb_to_x_seconds"] = round(time.perf_counter() - t, 2)
    results["edge_token_accuracy"] = _edge_token_accuracy(pipe, pred, truth, url)
    if "color_palette" in pred.raw:
        results["palette_distance"] = _palette_quality(pred.raw["color_palette"], truth["color_palette"], url,
                                                       len(rgb))
    if "metadata" in pred.raw:
        ok = sum(isinstance(m, dict) and len(m) > 0 for m in pred.raw["metadata"])
        results["metadata_parsed"] = f"{ok}/{len(rgb)}"
    # edge pixels: how well the decoded prediction overlaps the labeled edges, vs an all-edges guess
    results["edge_pixels"] = edge_overlap(pred.raw[EDGES], truth[EDGES])
    results["pngs"].append(_draw_rgb_to_x(pipe, pred, truth, show, out))

    # canny_edge + color_palette → rgb
    cond = {EDGES: truth[EDGES]}
    if "color_palette" in truth and "color_palette" in names:
        cond["color_palette"] = truth["color_palette"]
    t = time.perf_counter()
    pred2 = _generate(pipe, cond, [TargetConfig(modality="tok_rgb", steps=8, temperature=0.5)], cfg.seed)
    results["x_to_rgb_seconds"] = round(time.perf_counter() - t, 2)
    results["pngs"].append(_draw_x_to_rgb(pipe, pred2, rgb, show, out))
    rgb_mae = float(np.mean([np.abs(p.astype(np.float32) - _resize(r, p.shape[:2]).astype(np.float32)).mean()
                             for p, r in zip(pred2.raw["tok_rgb"], rgb)]))
    results["edges_palette_to_rgb_mae"] = round(rgb_mae, 2)
    return results


def _ground_truth(mods: ModalitySet, names: Sequence[str], rgb: list[np.ndarray]) -> dict[str, list[Any]]:
    """The labelers' output on the held-out crops, for the scored modalities that were trained."""
    truth: dict[str, list[Any]] = {}
    for n in names:
        spec = mods[n]
        if spec.labeler is not None and n in SCORED:
            truth[n] = list(spec.labeler.build()({"rgb": rgb}))
    return truth


def _edge_token_accuracy(pipe: Any, pred: Any, truth: dict[str, list[Any]], url: str) -> dict[str, Any]:
    """Share of predicted edge tokens equal to the labeled edges' tokens, vs always predicting the most
    frequent token of the training store."""
    from fourm_core.data import Store

    gt_tokens = pipe.encode_inputs({EDGES: truth[EDGES]})[0][EDGES]["tensor"]  # (B, 196)
    pred_tokens = pred.tokens[EDGES].cpu()
    train_tokens = Store.open(url, "r").read_tokens(EDGES, slice(None))
    train_tokens = np.asarray(train_tokens).reshape(-1)
    mode_token = int(np.bincount(train_tokens).argmax())
    acc = float((pred_tokens == gt_tokens).float().mean())
    base_acc = float((gt_tokens == mode_token).float().mean())
    return {"model": round(acc, 4), "baseline_most_frequent_token": round(base_acc, 4),
            "most_frequent_token": mode_token, "beats_baseline": acc > base_acc}


def _palette_quality(pred: list[Any], truth: list[Any], url: str, n: int) -> dict[str, Any]:
    """Mean palette distance of the predicted palettes that parse, vs one fixed palette for every image (the
    medoid of the training palettes: the best single guess)."""
    from fourm_color_palette.metrics import medoid_palette, palette_distance

    from fourm_core.data import Store

    d_model = [palette_distance(p, g) for p, g in zip(pred, truth) if isinstance(p, dict) and "colors" in p]
    store = Store.open(url, "r")
    train_pal = store.read_raw("color_palette", range(store.num_samples))
    medoid = medoid_palette(train_pal[:: max(1, len(train_pal) // MEDOID_CANDIDATES)])
    d_base = [palette_distance(medoid, g) for g in truth]
    return {"model": round(float(np.mean(d_model)), 2) if d_model else None,
            "baseline_fixed_medoid_palette": round(float(np.mean(d_base)), 2),
            "parsed": f"{len(d_model)}/{n}", "units": "RGB, symmetric mean nearest-colour distance"}


def edge_overlap(pred: Sequence[Any], truth: Sequence[np.ndarray], tolerance: int = 2) -> dict[str, Any]:
    """Mean edge-pixel F1 of the predicted edge maps that decoded (``fourm_canny_edge.metrics.edge_f1``:
    matched within ``tolerance`` pixels, decoded edges being a few pixels wide) and of the trivial guess
    "every pixel is an edge" (``all_edges_f1``)."""
    from fourm_canny_edge.metrics import all_edges_f1, edge_f1

    scored = [(p, t) for p, t in zip(pred, truth) if isinstance(p, np.ndarray)]
    f1s = [edge_f1(p, t, tolerance) for p, t in scored]
    base = [all_edges_f1(t) for _, t in scored]
    return {"f1_model": round(float(np.mean(f1s)), 4) if f1s else None,
            "f1_baseline_all_edges": round(float(np.mean(base)), 4) if base else None,
            "tolerance_px": tolerance}


def _draw_rgb_to_x(pipe: Any, pred: Any, truth: dict[str, list[Any]], show: int, out: Path) -> str:
    """``OUT/rgb_to_edges_palette_metadata.png``: the predictions (edges as the decoder's edge strength) next
    to the labelers' ground truth and the labeled edges through the edge tokenizer."""
    sub = _subset(pred, show)
    # draw the edge decoder's soft output (edge strength in [0, 1]): the thresholded map loses faint strokes
    sub.raw[EDGES] = grey_images(_decoded_edge_strength(pipe, sub.tokens[EDGES].cpu()))
    with _quiet("fourm_core.pipeline"):  # unparseable rows are drawn as their text on purpose
        grid = pipe.render(sub, tile=TILE)
    gt_cols = [(n, truth[n][:show]) for n in SCORED if n in truth]
    # the labeled edges through the edge tokenizer: what a perfect 4M prediction would decode to
    gt_tokens = pipe.encode_inputs({EDGES: truth[EDGES][:show]})[0][EDGES]["tensor"]
    gt_cols.insert(1, (f"{EDGES} (tokenized)", grey_images(_decoded_edge_strength(pipe, gt_tokens))))
    png = out / "rgb_to_edges_palette_metadata.png"
    side_by_side([("held-out input -> 4M predictions (AnyToAny; edges: decoder's edge strength)", grid),
                  ("labelers' ground truth", render_columns(gt_cols, pipe.modalities, tile=TILE))]).save(png)
    return str(png)


def _decoded_edge_strength(pipe: Any, tokens: Any) -> Any:
    """Edge tokens → the edge tokenizer's decoded edge strength, ``(B, 1, H, W)`` in [0, 1]."""
    from fourm_canny_edge.metrics import edge_strength

    return edge_strength(pipe.codec(EDGES).tokenizer.decode(tokens).detach().float())


def _draw_x_to_rgb(pipe: Any, pred: Any, rgb: list[np.ndarray], show: int, out: Path) -> str:
    """``OUT/edges_palette_to_rgb.png``: the generated photos next to the real ones and their tok_rgb
    reconstructions."""
    from fourm_core.pipeline import render_grid

    grid = pipe.render(_subset(pred, show), tile=TILE)
    recon = pipe.codec("tok_rgb").decode(pipe.encode_inputs({"tok_rgb": rgb[:show]})[0]["tok_rgb"]["tensor"])
    png = out / "edges_palette_to_rgb.png"
    side_by_side([("held-out inputs -> 4M prediction (AnyToAny)", grid),
                  ("real photo / its tok_rgb reconstruction", render_grid(
                      [("rgb", rgb[:show]), ("tok_rgb", list(recon))], pipe.modalities, tile=TILE))]).save(png)
    return str(png)


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
    text ``"unparseable: ..."`` instead of failing the whole batch."""
    with _quiet("fourm_core.pipeline"):
        return pipe(inputs, targets=targets, seed=seed, decode_errors="text")


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))


def _subset(out: Any, n: int) -> Any:
    """The first ``n`` rows of an AnyToAnyOutput (for drawing)."""
    from fourm_core.pipeline import AnyToAnyOutput

    return AnyToAnyOutput({k: v[:n] for k, v in out.raw.items()}, {k: v[:n] for k, v in out.tokens.items()},
                          {k: v[:n] for k, v in out.inputs.items()}, True)
