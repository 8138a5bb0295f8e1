"""``fourm_color_palette.metrics`` on hand-made palettes whose distances are known."""

from __future__ import annotations

import math

import pytest

from fourm_color_palette.metrics import medoid_palette, palette_distance


def _pal(*colors):
    return {"colors": [list(c) for c in colors]}


def test_same_colours_are_at_distance_zero_whatever_the_order():
    a = _pal((255, 0, 0), (0, 128, 255))
    assert palette_distance(a, a) == 0.0
    assert palette_distance(a, _pal((0, 128, 255), (255, 0, 0), (255, 0, 0))) == 0.0


def test_single_colours_are_their_euclidean_distance():
    assert palette_distance(_pal((0, 0, 0)), _pal((3, 4, 0))) == pytest.approx(5.0)
    assert palette_distance(_pal((0, 0, 0)), _pal((255, 255, 255))) == pytest.approx(255 * math.sqrt(3))


def test_unequal_sizes_average_both_directions():
    a = _pal((0, 0, 0), (10, 0, 0))
    b = _pal((0, 0, 0))
    # a → b: nearest distances 0 and 10 (mean 5); b → a: 0 (mean 0); half their sum: 2.5
    assert palette_distance(a, b) == pytest.approx(2.5)
    assert palette_distance(b, a) == pytest.approx(2.5)


def test_medoid_is_the_palette_closest_to_all_others():
    dark, mid, light = _pal((0, 0, 0)), _pal((100, 0, 0)), _pal((250, 0, 0))
    # summed distances: dark 100 + 250 = 350, mid 100 + 150 = 250, light 250 + 150 = 400
    assert medoid_palette([dark, light, mid]) is mid
    assert medoid_palette([light]) is light
    # ties: the first one
    twin = _pal((100, 0, 0))
    assert medoid_palette([twin, mid]) is twin and medoid_palette([mid, twin]) is mid


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="color_palette.*palette"):
        palette_distance({"colours": []}, _pal((0, 0, 0)))
    with pytest.raises(ValueError, match="at least one"):
        medoid_palette([])
