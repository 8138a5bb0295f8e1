"""Depth (scale-and-shift aligned δ / AbsRel / RMSE) and normal (angle statistics) metrics on tiny maps whose
figures are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fourm_core.metrics.angles import AngleStats, NormalMetric, angles_deg
from fourm_core.metrics.base import MetricError
from fourm_core.metrics.dense import DepthMetric, align_scale_shift

REF = np.array([[0.2, 0.4], [0.5, 1.0]], np.float32)[..., None]


def test_alignment_is_the_least_squares_solution():
    rng = np.random.default_rng(0)
    p, r = rng.random((20, 20)), rng.random((20, 20))
    valid = rng.random((20, 20)) > 0.3
    s, t = align_scale_shift(p, r, valid)
    (s_ref, t_ref), *_ = np.linalg.lstsq(np.stack([p[valid], np.ones(valid.sum())], 1), r[valid], rcond=None)
    assert (s, t) == pytest.approx((s_ref, t_ref), rel=1e-9)
    assert align_scale_shift(np.full((4, 4), 0.3), r[:4, :4], np.ones((4, 4), bool)) == (0.0, pytest.approx(r[:4, :4].mean()))


def test_unaligned_figures_match_hand_computation():
    pred = REF.copy()
    pred[1, 1, 0] = 0.6  # one pixel off: |0.6 - 1| = 0.4, ratio 1/0.6 = 1.667
    m = DepthMetric(align="none")
    [score] = m.update([pred], [REF])
    f = m.compute()
    assert f["abs_rel"] == pytest.approx(0.4 / 4, abs=1e-6)
    assert f["rmse"] == pytest.approx(math.sqrt(0.16 / 4), abs=1e-6)
    assert (f["delta1"], f["delta2"], f["delta3"]) == (0.75, 0.75, 1.0)  # 1.25 < 1.5625 < 1.667 < 1.953
    assert score == f["delta1"]


def test_scale_and_shift_of_the_reference_is_perfect_and_nan_pixels_are_left_out():
    ref = REF.copy()
    ref[0, 1, 0] = np.nan
    pred = 3.0 * REF + 0.5  # any affine map of the reference
    pred[0, 1, 0] = 100.0  # under the invalid pixel: must not count
    m = DepthMetric()
    m.update([pred.astype(np.float16)], [ref.astype(np.float16)])
    f = m.compute()
    assert f["delta1"] == 1.0 and f["abs_rel"] == pytest.approx(0, abs=2e-3) and f["valid_fraction"] == 0.75


def test_figures_are_averaged_over_images_and_predictions_are_resized():
    m = DepthMetric(align="none")
    big = np.kron(REF[..., 0], np.ones((3, 3), np.float32))[..., None]  # 6x6 blocks: bilinear keeps block centres
    off = REF.copy()
    off[1, 1, 0] = 0.6
    m.update([REF, off], [REF, REF])
    assert m.compute()["abs_rel"] == pytest.approx((0 + 0.1) / 2, abs=1e-6)
    m2 = DepthMetric(align="none")
    m2.update([np.kron(REF[..., 0], np.ones((4, 4)))[..., None]], [big])  # 8x8 prediction for a 6x6 reference
    assert m2.compute()["delta1"] > 0.9


def test_depth_errors_name_the_modality_and_sample():
    m = DepthMetric()
    with pytest.raises(MetricError, match=r"'depth' metrics, sample 0: the prediction must be a numeric \(H, W, 1\)"):
        m.update([np.zeros((4, 4, 3))], [REF])
    with pytest.raises(MetricError, match="NaN"):
        m.update([np.full((2, 2, 1), np.nan)], [REF])
    with pytest.raises(MetricError, match="2 predictions but 1 references"):
        m.update([REF, REF], [REF])
    with pytest.raises(MetricError, match="no samples scored yet"):
        m.compute()


def _tilt(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([math.sin(a), 0.0, math.cos(a)])


def test_angle_statistics_match_hand_computation():
    ref = np.tile(np.array([0.0, 0.0, 1.0]), (1, 5, 1))
    pred = np.stack([_tilt(d) for d in (0, 10, 20, 25, 45)])[None] * 2.0  # any length
    m = NormalMetric()
    [score] = m.update([pred], [ref])
    f = m.compute()
    assert f["mean_angle"] == pytest.approx(20.0, abs=1e-6) == score
    assert f["median_angle"] == pytest.approx(20.0, abs=0.01)
    assert f["rmse_angle"] == pytest.approx(math.sqrt((100 + 400 + 625 + 2025) / 5), abs=1e-6)
    assert (f["within_11.25"], f["within_22.5"], f["within_30"]) == (0.4, 0.6, 0.8)


def test_angles_pool_pixels_over_samples_and_skip_invalid_reference_pixels():
    up = np.array([0, 0, 1.0])
    ref_a = np.stack([up, up, np.zeros(3)])[None]  # the zero vector is invalid
    pred_a = np.stack([_tilt(30), _tilt(30), _tilt(90)])[None]
    ref_b, pred_b = up[None, None], _tilt(90)[None, None]
    m = NormalMetric()
    assert m.update([pred_a, pred_b], [ref_a, ref_b]) == pytest.approx([30.0, 90.0])
    f = m.compute()
    assert f["mean_angle"] == pytest.approx(50.0)  # (30 + 30 + 90) / 3 pixels, not (30 + 90) / 2 samples
    assert f["median_angle"] == pytest.approx(30.0)


def test_uint8_storage_is_decoded_and_grey_is_invalid():
    ref = np.full((4, 4, 3), 128, np.uint8)
    ref[:2] = np.round((np.array([0, 0, 1.0]) + 1) * 127.5).astype(np.uint8)
    pred = np.round((_tilt(45) + 1) * 127.5).astype(np.uint8)[None, None].repeat(4, 0).repeat(4, 1)
    m = NormalMetric()
    m.update([pred], [ref])
    assert m.stats.n == 8 and m.compute()["mean_angle"] == pytest.approx(45.0, abs=0.5)


def test_even_median_and_exact_zero_angles():
    s = AngleStats()
    s.add(np.array([1.0, 2.0, 3.0, 10.0]))
    assert s.median() == pytest.approx(2.5)
    v = np.random.default_rng(1).normal(size=(50, 3))
    assert angles_deg(v, 3 * v).max() < 1e-12  # arccos of the cosine would give ~1e-6°
