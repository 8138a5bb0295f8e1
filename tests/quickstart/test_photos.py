"""The quickstart's colour augmentation (``photos.recolor``): what it keeps and what it spreads."""

from __future__ import annotations

import colorsys

import numpy as np

from fourm_quickstart.photos import recolor


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_recolor_keeps_shape_dtype_and_is_seeded():
    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a = recolor([crop, crop], np.random.default_rng(5))
    b = recolor([crop, crop], np.random.default_rng(5))
    assert all(x.shape == crop.shape and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])  # each crop draws its own scheme


def test_recolor_colours_grey_photos_and_keeps_their_luma():
    """A grey crop (where the channel permutation changes nothing) gets a colour, and its luma stays (no clipping
    at mid-grey levels)."""
    grey = np.repeat(np.linspace(90, 170, 32 * 32).reshape(32, 32, 1), 3, axis=2).astype(np.uint8)
    outs = recolor([grey] * 20, np.random.default_rng(1))
    sat = [np.ptp(o.astype(int), axis=2).mean() for o in outs]
    assert np.mean(sat) > 10 and min(sat) > 1, sat  # coloured (R, G, B differ)
    for o in outs:
        np.testing.assert_allclose(_luma(o), _luma(grey), atol=1.5)  # rounding only


def test_recolor_spreads_one_colour_over_the_hue_circle():
    """One orange patch recoloured 60 times: its hue lands all around the circle (6 sextants), not just on the
    6 channel permutations' positions."""
    patch = np.full((8, 8, 3), (200, 110, 40), np.uint8)
    hues = [colorsys.rgb_to_hsv(*(o[0, 0] / 255.0))[0] for o in recolor([patch] * 60, np.random.default_rng(2))]
    counts = np.histogram(hues, bins=12, range=(0.0, 1.0))[0]
    assert (counts > 0).sum() >= 10, counts
