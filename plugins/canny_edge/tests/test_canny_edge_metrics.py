"""``fourm_canny_edge.metrics`` on hand-made edge maps whose F1 is known."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_canny_edge.metrics import all_edges_f1, edge_f1, edge_strength


def _edges(h: int, w: int, *pixels: tuple[int, int]) -> np.ndarray:
    out = np.zeros((h, w, 1), np.uint8)
    for y, x in pixels:
        out[y, x, 0] = 255
    return out


def _vline(h: int, w: int, x: int) -> np.ndarray:
    return _edges(h, w, *[(y, x) for y in range(h)])


def test_identical_maps_score_one():
    t = _vline(20, 20, 5)
    assert edge_f1(t, t) == pytest.approx(1.0)


def test_tolerance_counts_shifted_edges_as_matched():
    t, p = _vline(20, 20, 5), _vline(20, 20, 7)  # 2 px to the right
    assert edge_f1(p, t, tolerance=2) == pytest.approx(1.0)
    assert edge_f1(p, t, tolerance=1) == 0.0
    assert edge_f1(_vline(20, 20, 6), t, tolerance=0) == 0.0


def test_partial_overlap_has_the_hand_computed_f1():
    # truth: a 20-pixel column; prediction: the top 10 of it plus 10 stray pixels far away
    t = _vline(20, 40, 5)
    p = _edges(20, 40, *[(y, 5) for y in range(10)], *[(y, 30) for y in range(10)])
    # precision 10/20 = 0.5; recall: labeled pixels with a prediction within 2 px: rows 0..11 → 12/20 = 0.6
    prec, rec = 0.5, 0.6
    assert edge_f1(p, t, tolerance=2) == pytest.approx(2 * prec * rec / (prec + rec))


def test_empty_prediction_or_truth_scores_zero():
    t = _vline(10, 10, 3)
    empty = np.zeros_like(t)
    assert edge_f1(empty, t) == 0.0
    assert edge_f1(t, empty) == 0.0


def test_prediction_is_resized_to_the_truth():
    t = np.zeros((32, 32, 1), np.uint8)
    t[:, 8:24] = 255  # a wide band: edges everywhere inside it
    p = np.zeros((16, 16, 1), np.uint8)
    p[:, 4:12] = 255  # the same band at half the size
    assert edge_f1(p, t, tolerance=1) == pytest.approx(1.0)


def test_all_edges_baseline_is_two_d_over_d_plus_one():
    t = _edges(10, 10, *[(0, x) for x in range(10)])  # density 0.1
    assert all_edges_f1(t) == pytest.approx(0.2 / 1.1)
    # it is the F1 of a prediction marking every pixel
    assert edge_f1(np.full_like(t, 255), t, tolerance=0) == pytest.approx(all_edges_f1(t))


def test_edge_strength_picks_the_edge_channel():
    strength = np.random.default_rng(0).random((2, 1, 4, 4))
    assert edge_strength(strength) is strength
    probs = np.concatenate([1 - strength, strength], axis=1)  # {no edge, edge}
    np.testing.assert_array_equal(edge_strength(probs), strength)
    with pytest.raises(ValueError, match="canny_edge.*got \\(2, 3, 4, 4\\)"):
        edge_strength(np.zeros((2, 3, 4, 4)))


def test_bad_maps_are_named():
    with pytest.raises(ValueError, match="canny_edge.*truth"):
        edge_f1(_vline(4, 4, 1), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="tolerance"):
        edge_f1(_vline(4, 4, 1), _vline(4, 4, 1), tolerance=-1)
