"""The quickstart's task figures (``fourm_quickstart.scores``) and grids (``render.task_grid``) on tiny inputs
whose scores are known: a perfect prediction beats the trivial baseline, the baseline's own guess does not,
an unparsed sequence counts as the baseline's guess, the oracle is scored by the same metric."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_quickstart import scores


def _edges(rows: list[int], size: int = 32) -> np.ndarray:
    e = np.zeros((size, size, 1), np.uint8)
    e[rows] = 255
    return e


def test_edge_task_baseline_is_the_all_edges_map_under_the_same_tolerance():
    from fourm_canny_edge.metrics import all_edges_f1, edge_f1

    truth = [_edges([4, 20]), _edges([10])]
    rec = scores.edge_task(truth, truth, truth, tolerance=2)
    assert rec["model"] == rec["oracle"] == 1.0 and rec["beats_baseline"] and rec["higher_is_better"]
    every = np.mean([edge_f1(np.full_like(t, 255), t, 2) for t in truth])
    assert rec["baseline"] == pytest.approx(every, abs=1e-4)
    # the tolerance makes "every pixel" a much stronger guess than the untolerant formula 2d / (d + 1)
    assert rec["baseline"] > 2 * np.mean([all_edges_f1(t) for t in truth])
    blank = scores.edge_task([np.zeros_like(t) for t in truth], truth, truth, tolerance=2)
    assert blank["model"] == 0.0 and not blank["beats_baseline"]
    shifted = scores.edge_task([_edges([5, 21]), _edges([11])], truth, truth, tolerance=2)
    assert shifted["model"] == 1.0  # within the tolerance


def test_palette_task_medoid_baseline_and_unparsed_rows():
    train = [{"colors": [[0, 0, 0]]}, {"colors": [[10, 0, 0]]}, {"colors": [[250, 250, 250]]}]
    truth = [{"colors": [[0, 0, 200]]}, {"colors": [[250, 250, 250]]}]
    rec = scores.palette_task(truth, truth, train, truth)
    assert rec["model"] == rec["oracle"] == 0.0 and rec["beats_baseline"] and rec["parsed"] == "2/2"
    assert rec["fixed_palette"] == {"colors": [[10, 0, 0]]}  # the medoid of the training palettes
    assert rec["baseline"] == pytest.approx((np.sqrt(10**2 + 200**2) + np.sqrt(240**2 + 250**2 * 2)) / 2, abs=1e-3)
    # an unparsed row is scored as the fixed palette: the model cannot gain from it
    half = scores.palette_task(["unparseable: v1=9", truth[1]], truth, train, truth)
    assert half["parsed"] == "1/2"
    assert half["model"] == pytest.approx(np.sqrt(10**2 + 200**2) / 2, abs=1e-3)
    none = scores.palette_task(["unparseable", "unparseable"], truth, train, truth)
    assert none["model"] == none["baseline"] and not none["beats_baseline"] and none["parsed"] == "0/2"


def test_metadata_task_in_training_standard_deviations():
    train = [{"brightness": b, "contrast": 10.0, "saturation": s} for b, s in ((0.0, 0.0), (100.0, 50.0), (200.0, 100.0))]
    truth = [{"brightness": 150.0, "contrast": 10.0, "saturation": 50.0}]
    rec = scores.metadata_task(truth, truth, train, truth)
    assert rec["keys"] == ["brightness", "saturation"]  # contrast does not vary in training: not scored
    assert rec["model"] == 0.0 and rec["beats_baseline"]
    sd_b, sd_s = np.std([0, 100, 200]), np.std([0, 50, 100])
    assert rec["baseline"] == pytest.approx((50 / sd_b + 0 / sd_s) / 2, abs=1e-4)  # medians 100, 50
    # a missing key takes the baseline's value; an unparsed row is the baseline
    partial = scores.metadata_task([{"saturation": 50.0}], truth, train, truth)
    assert partial["model"] == rec["baseline"] and not partial["beats_baseline"] and partial["keys_predicted"] == 0.5
    bad = scores.metadata_task(["unparseable: v1=40"], truth, train, truth)
    assert bad["parsed"] == "0/1" and bad["model"] == bad["baseline"]


def test_rgb_task_mean_image_baseline():
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    mean = scores.mean_image(truth, (8, 8))
    assert mean.shape == (8, 8, 3) and mean.dtype == np.uint8
    perfect = [scores.resized(t, (8, 8)) for t in truth]
    rec = scores.rgb_task(perfect, truth, mean, perfect)
    assert rec["model"] == rec["oracle"] == 0.0 and rec["baseline"] > 0 and rec["beats_baseline"]
    same = scores.rgb_task([mean] * 3, truth, mean, perfect)
    assert same["model"] == same["baseline"] and not same["beats_baseline"]


def test_task_grid_has_title_headers_rows_and_caption():
    from PIL import Image

    from fourm_registry import get_modalities
    from fourm_quickstart.render import Column, task_grid

    mods = get_modalities()
    rgb = [np.full((64, 64, 3), v, np.uint8) for v in (30, 200)]
    cols = [Column("input: held-out photo", "rgb", rgb), Column("4M prediction", "color_palette",
                                                                [{"colors": [[255, 0, 0]]}, "unparseable: v1=9"]),
            Column("truth", "color_palette", [{"colors": [[0, 0, 255]]}, {"colors": [[0, 255, 0]]}])]
    img = task_grid("a title", cols, mods, caption="Good result: red.", tile=64)
    assert isinstance(img, Image.Image) and img.width == 3 * 64 + 4 * 4
    a = np.asarray(img)
    assert (a[..., 0] > 200).any() and ((a[..., 0] > 200) & (a[..., 1] < 50)).any()  # the red swatch
    # title band and caption drawn (dark text pixels at the top and the bottom)
    assert (a[:12].min(-1) < 100).any() and (a[-12:].min(-1) < 120).any()
    assert img.height > 2 * 64 + 40


def test_a_constant_prediction_never_beats_the_baseline_even_when_it_scores_better():
    """One output for every crop is no learning, even when that output suits the held-out crops better than
    the training mean (the run that painted one brown for every crop): the model must beat its own constant."""
    rng = np.random.default_rng(0)
    truth = [np.clip(rng.normal(150, 30, (8, 8, 3)), 0, 255).astype(np.uint8) for _ in range(4)]
    grey = np.full((8, 8, 3), 60, np.uint8)  # the training mean, far from these crops
    brown = np.full((8, 8, 3), 150, np.uint8)
    lucky = scores.rgb_task([brown] * 4, truth, grey, truth)
    assert lucky["model"] < lucky["baseline"]  # it scores better than the baseline...
    assert lucky["own_constant"] == lucky["model"] and lucky["input_dependent"] is False
    assert not lucky["beats_baseline"]  # ...but does not beat it
    # a prediction that follows the input beats both
    near = [np.clip(t.astype(int) + 5, 0, 255).astype(np.uint8) for t in truth]
    good = scores.rgb_task(near, truth, grey, truth)
    assert good["input_dependent"] and good["beats_baseline"] and good["model"] < good["own_constant"]
    # the same rule for palettes, edges and statistics
    pal = [{"colors": [[200, 10, 10]]}, {"colors": [[10, 200, 10]]}, {"colors": [[10, 10, 200]]}]
    same = scores.palette_task([pal[0]] * 3, pal, [{"colors": [[0, 0, 0]]}], pal)
    assert same["model"] < same["baseline"] and not same["input_dependent"] and not same["beats_baseline"]
    assert scores.palette_task(pal, pal, [{"colors": [[0, 0, 0]]}], pal)["beats_baseline"]
    edges = [_edges([4]), _edges([12]), _edges([20])]
    one = scores.edge_task([_edges([4])] * 3, edges, edges, tolerance=1)
    assert not one["input_dependent"] and not one["beats_baseline"]
    assert scores.edge_task(edges, edges, edges, tolerance=1)["input_dependent"]
    train = [{"brightness": b} for b in (0.0, 100.0, 200.0)]
    stats = [{"brightness": 20.0}, {"brightness": 180.0}]
    flat = scores.metadata_task([{"brightness": 100.0}] * 2, stats, train, stats)
    assert flat["own_constant"] == flat["model"] and not flat["beats_baseline"]
    assert scores.metadata_task(stats, stats, train, stats)["beats_baseline"]


def test_one_crop_cannot_tell_a_constant_and_is_judged_by_the_baseline_alone():
    truth = [np.full((4, 4, 3), 100, np.uint8)]
    rec = scores.rgb_task(truth, truth, np.zeros((4, 4, 3), np.uint8), truth)
    assert "input_dependent" not in rec and "own_constant" not in rec and rec["beats_baseline"]
