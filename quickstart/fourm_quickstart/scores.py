"""The quickstart's task figures: the 4M's score on held-out crops, a trivial baseline's and the tokenizer
oracle's, all with the same metric (numpy only; the inputs are the modalities' raw forms).

* **baseline**: the best guess that does not look at the input (a fixed palette, fixed statistics, a fixed
  image, an all-edges map): the 4M has learnt something only when it beats it;
* **oracle**: the ground truth passed through the modality's tokenizer (encode, decode): what a perfect 4M
  prediction would score, the ceiling the tokenizer sets.

* **own constant**: the model's own predictions collapsed to one guess for every crop (their mean image, their
  medoid palette, their majority edge map, their median statistics). A model that writes about the same
  output whatever the input can beat the baseline by luck, when its constant happens to suit the held-out
  photos better than the training average does (a run painted one brown for every crop and "beat" the mean
  image on coffee and a palace); it cannot beat its own constant. So a task beats its baseline only when the
  model beats both: ``input_dependent`` records the second condition (with a single crop it cannot be told
  and is left out).

Each task's record (:func:`task_record`) holds ``model``, ``baseline``, ``oracle`` (means over the crops), the
metric's name and direction, and ``beats_baseline``. A sequence that did not parse (the text of an
``"unparseable: ..."`` row) is scored as the baseline's guess, so that it can never help the model; the record
says how many parsed (``parsed: "n/m"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: pixel tolerance of the edge F1: decoded edges are a few pixels wide where Canny's are one
EDGE_TOLERANCE = 2


def task_record(metric: str, *, higher_is_better: bool, model: Sequence[float], baseline: Sequence[float],
                oracle: Sequence[float], baseline_name: str, good: str, parsed: str | None = None,
                own_constant: Sequence[float] | None = None, **extra: Any) -> dict[str, Any]:
    """One task's figures: means over the crops of per-crop scores (the model's, the baseline's, the oracle's,
    the model's own constant's) and whether the model beats the baseline (strictly, in the metric's
    direction) and, with two crops or more, its own constant too (``input_dependent``)."""
    m, b, o = (round(float(np.mean(v)), 4) for v in (model, baseline, oracle))

    def better(x: float, y: float) -> bool:
        return bool(x > y if higher_is_better else x < y)

    rec: dict[str, Any] = {"metric": metric, "higher_is_better": higher_is_better, "model": m, "baseline": b,
                           "oracle": o, "baseline_is": baseline_name, "good_result": good,
                           "beats_baseline": better(m, b), "crops": len(model)}
    if own_constant is not None and len(model) > 1:
        c = round(float(np.mean(own_constant)), 4)
        rec["own_constant"] = c
        rec["input_dependent"] = better(m, c)
        rec["beats_baseline"] = rec["beats_baseline"] and rec["input_dependent"]
    if parsed is not None:
        rec["parsed"] = parsed
    return {**rec, **extra}


def verdict(rec: dict[str, Any]) -> str:
    """"beats the baseline" or "does NOT beat the baseline", how many sequences parsed, and when the model's
    predictions hardly depend on the input (it does not beat its own constant guess, :func:`task_record`):
    the clause the run's output and the grids' titles end with."""
    text = f"{'beats' if rec['beats_baseline'] else 'does NOT beat'} the baseline"
    if "parsed" in rec:
        text += f", parsed {rec['parsed']}"
    if not rec.get("input_dependent", True):
        text += (f"; its predictions hardly depend on the input: one guess for every crop, their average, scores "
                 f"{rec['own_constant']:.3g}")
    return text


def parsed_or(pred: Sequence[Any], fallback: Any, ok: Any) -> tuple[list[Any], str]:
    """``pred`` with the rows that did not parse (``ok(row)`` false) replaced by ``fallback``, and ``"n/m"``."""
    good = [bool(ok(p)) for p in pred]
    return [p if g else fallback for p, g in zip(pred, good)], f"{sum(good)}/{len(pred)}"


# -- rgb -> canny_edge ---------------------------------------------------------------------------
def edge_task(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], oracle: Sequence[np.ndarray],
              tolerance: int = EDGE_TOLERANCE) -> dict[str, Any]:
    """Edge-pixel F1 within ``tolerance`` pixels (``fourm_canny_edge.metrics.edge_f1``). Baseline: the better
    of the two constant maps, every pixel an edge or none (F1 0), scored by the same F1."""
    from fourm_canny_edge.metrics import edge_f1

    f1 = [edge_f1(p, t, tolerance) for p, t in zip(pred, truth)]
    every = [edge_f1(np.full_like(t, 255), t, tolerance) for t in truth]
    base = every if np.mean(every) > 0.0 else [0.0] * len(truth)
    majority = np.where(np.mean([np.asarray(p) > 0 for p in pred], axis=0) >= 0.5, 255, 0).astype(np.uint8)
    return task_record(f"edge-pixel F1 ({tolerance} px tolerance)", higher_is_better=True, model=f1, baseline=base,
                       oracle=[edge_f1(o, t, tolerance) for o, t in zip(oracle, truth)],
                       own_constant=[edge_f1(majority, t, tolerance) for t in truth],
                       baseline_name="every pixel an edge (scored by the same F1)",
                       good="the predicted strokes lie on the photo's outlines and textures (F1 near the oracle's)")


# -- rgb -> color_palette ------------------------------------------------------------------------
def is_palette(p: Any) -> bool:
    return isinstance(p, dict) and isinstance(p.get("colors"), list) and len(p["colors"]) > 0


def palette_task(pred: Sequence[Any], truth: Sequence[Any], train: Sequence[Any], oracle: Sequence[Any],
                 candidates: int = 96) -> dict[str, Any]:
    """Palette distance (``fourm_color_palette.metrics.palette_distance``, RGB units, lower is better).
    Baseline: one fixed palette for every crop, the medoid of (an evenly spaced subset of) the training
    palettes, i.e. the best single guess among them."""
    from fourm_color_palette.metrics import medoid_palette, palette_distance

    medoid = medoid_palette(list(train[:: max(1, len(train) // candidates)]))
    scored, parsed = parsed_or(pred, medoid, is_palette)
    own = medoid_palette(scored)
    return task_record("palette distance (RGB, mean nearest-colour)", higher_is_better=False,
                       model=[palette_distance(p, t) for p, t in zip(scored, truth)],
                       baseline=[palette_distance(medoid, t) for t in truth],
                       own_constant=[palette_distance(own, t) for t in truth],
                       oracle=[palette_distance(o, t) for o, t in zip(oracle, truth)], parsed=parsed,
                       baseline_name="the training palettes' medoid, the same for every crop",
                       good="the swatches show the crop's dominant colours, in about the truth's shades",
                       fixed_palette=medoid)


# -- rgb -> metadata -----------------------------------------------------------------------------
def metadata_task(pred: Sequence[Any], truth: Sequence[dict[str, float]], train: Sequence[dict[str, float]],
                  oracle: Sequence[Any]) -> dict[str, Any]:
    """Mean absolute error of the image statistics, each key in units of its spread over the training crops
    (standard deviation), averaged over the keys of the ground truth that vary in training. A key the
    prediction lacks takes the baseline's value. Baseline: every key's training median, for every crop."""
    keys = [k for k in truth[0] if all(k in t for t in truth)
            and np.std([float(r[k]) for r in train if k in r]) > 0]
    values = {k: np.asarray([float(r[k]) for r in train if k in r]) for k in keys}
    median = {k: float(np.median(v)) for k, v in values.items()}
    spread = {k: float(np.std(v)) for k, v in values.items()}
    scored, parsed = parsed_or(pred, median, lambda p: isinstance(p, dict) and len(p) > 0)

    def err(p: dict[str, Any], t: dict[str, float]) -> float:
        return float(np.mean([abs(float(p.get(k, median[k])) - float(t[k])) / spread[k] for k in keys]))

    covered = [sum(k in p for k in keys) / len(keys) for p in scored]
    own = {k: float(np.median([float(p.get(k, median[k])) for p in scored])) for k in keys}
    return task_record("statistics' mean absolute error (in training standard deviations)", higher_is_better=False,
                       model=[err(p, t) for p, t in zip(scored, truth)],
                       baseline=[err(median, t) for t in truth],
                       own_constant=[err(own, t) for t in truth],
                       oracle=[err(o, t) for o, t in zip(oracle, truth)], parsed=parsed,
                       baseline_name="each statistic's training median, the same for every crop",
                       good="brightness, contrast, saturation... close to the truth's (error well under the "
                            "baseline's)", keys=keys, keys_predicted=round(float(np.mean(covered)), 3))


# -- canny_edge + color_palette -> rgb -----------------------------------------------------------
def resized(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A uint8 (H, W, 3) image resized (bilinear) to ``hw``."""
    from PIL import Image

    if img.shape[:2] == tuple(hw):
        return img
    return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))


def mean_image(images: Sequence[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """The per-pixel mean of ``images`` at size ``hw``, uint8."""
    acc = np.zeros((*hw, 3), np.float64)
    for im in images:
        acc += resized(np.asarray(im, np.uint8), hw)
    return np.clip(np.rint(acc / max(len(images), 1)), 0, 255).astype(np.uint8)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - resized(b, a.shape[:2]).astype(np.float32)).mean())


def rgb_task(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], fixed: np.ndarray,
             oracle: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean absolute error of the generated photo (RGB 0..255, the truth resized to the prediction's size).
    Baseline: one fixed image for every crop, the mean of the training crops."""
    own = mean_image(pred, np.asarray(pred[0]).shape[:2])
    return task_record("mean absolute error (RGB 0..255)", higher_is_better=False,
                       model=[_mae(p, t) for p, t in zip(pred, truth)],
                       baseline=[_mae(fixed, t) for t in truth],
                       own_constant=[_mae(own, t) for t in truth],
                       oracle=[_mae(o, t) for o, t in zip(oracle, truth)],
                       baseline_name="the mean of the training crops, the same for every crop",
                       good="the photo's layout and colours: regions where the truth has them (a blurry, "
                            "blocky rendering)")
