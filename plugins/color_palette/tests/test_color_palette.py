"""Tests of the color_palette plugin: the contract kit plus k-means and serializer properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_core.testing import ModalityPluginTests, sample_photos

from fourm_color_palette.components import PaletteLabeler, PaletteSerializer, PaletteTransform, visualize


class TestColorPalette(ModalityPluginTests):
    modality = "color_palette"
    crop_invariant = True  # a palette describes the whole image

    def example_raw(self):
        return PaletteLabeler(k=5)({"rgb": sample_photos(2)}) + [{"colors": [[0, 0, 0]]}]


def test_two_colour_image_gives_both_colours():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :40] = (200, 30, 10)
    img[:, 40:] = (5, 90, 250)
    pal = PaletteLabeler(k=2)({"rgb": [img]})[0]["colors"]
    assert pal == [[200, 30, 10], [5, 90, 250]]  # dominant (40 of 64 columns) first
    # asking for more colours than the image has gives only the colours it has
    assert PaletteLabeler(k=7).palette(img)["colors"] == pal


def test_levels_round_channels_and_merge_colours_that_meet():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :20] = (200, 30, 10)   # -> (204, 51, 0) with 6 levels
    img[:, 20:40] = (5, 90, 250)  # -> (0, 102, 255)
    img[:, 40:] = (210, 40, 20)   # -> (204, 51, 0) too: merged with the first, 44 of 64 columns
    exact = PaletteLabeler(k=3).palette(img)["colors"]
    assert len(exact) == 3 and [5, 90, 250] in exact
    assert PaletteLabeler(k=3, levels=6).palette(img)["colors"] == [[204, 51, 0], [0, 102, 255]]
    # every channel of a photo's palette is one of the levels; 256 levels is the exact palette
    photo = sample_photos(1)[0]
    for levels in (2, 6, 17):
        values = {v for c in PaletteLabeler(k=7, levels=levels).palette(photo)["colors"] for v in c}
        assert values <= {round(i * 255 / (levels - 1)) for i in range(levels)}, levels
    assert PaletteLabeler(k=7, levels=256).palette(photo) == PaletteLabeler(k=7).palette(photo)


@pytest.mark.parametrize("levels", [1, 257, 6.0, True])
def test_bad_levels_are_refused_with_the_modality(levels):
    with pytest.raises(ValueError, match="color_palette.*levels must be an integer 2..256"):
        PaletteLabeler(levels=levels)


def test_kmeans_is_deterministic_and_covers_the_photo():
    photo = sample_photos(1)[0]
    a = PaletteLabeler(k=7).palette(photo)
    b = PaletteLabeler(k=7).palette(photo)
    assert a == b and len(a["colors"]) == 7
    # every palette colour is near some pixel of the photo
    px = photo.reshape(-1, 3).astype(float)
    for c in a["colors"]:
        assert np.sqrt(((px - np.array(c)) ** 2).sum(1)).min() < 40


def test_serialization_layout_is_4m21():
    text = PaletteSerializer().to_text({"colors": [[255, 0, 7], [1, 2, 3]]})
    assert text == "v1=2 v0=255 v0=0 v0=7 v0=1 v0=2 v0=3"


colors = st.lists(st.lists(st.integers(0, 255), min_size=3, max_size=3), min_size=1, max_size=7)


@settings(max_examples=200, deadline=None)
@given(colors)
def test_round_trip_is_exact(cols):
    ser = PaletteSerializer()
    raw = {"colors": cols}
    text = ser.to_text(raw)
    assert ser.from_text(text) == raw
    assert len(text.split()) == 1 + 3 * len(cols) <= 22


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.lists(st.sampled_from(["v0=1", "v1=3", "v1=0", "v1=9", "v0=256", "v2=5", "v0=999", "red", "v0=x"]),
                          max_size=25).map(" ".join)))
def test_garbage_never_crashes_the_parser(text):
    try:
        raw = PaletteSerializer().from_text(text)
    except ValueError as exc:
        assert "color_palette" in str(exc)
    else:
        assert 1 <= len(raw["colors"]) <= 7


def test_bad_raw_and_tokens_name_the_modality():
    with pytest.raises(ValueError, match="color_palette.*'v0=300'"):
        PaletteSerializer().from_text("v1=1 v0=300 v0=0 v0=0")
    with pytest.raises(ValueError, match="color_palette"):
        PaletteSerializer().to_text({"colors": [[0, 0, 256]]})
    with pytest.raises(ValueError, match="color_palette"):
        PaletteLabeler(k=9)


def test_transform_is_identity_and_visualizer_draws_the_colours():
    raw = {"colors": [[255, 0, 0], [0, 0, 255]]}
    assert PaletteTransform().crop(raw, box=(0, 0, 10, 10), flip=True) == raw
    img = np.asarray(visualize(raw))
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[0, -1]) == (0, 0, 255)
