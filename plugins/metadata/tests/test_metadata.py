"""Tests of the metadata plugin: the contract kit plus statistics, counts and serializer properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_core.testing import ModalityPluginTests, sample_photos

from fourm_metadata.components import (
    FLOAT_BINS,
    INT_KEYS,
    KEYS,
    MANUAL_BINS,
    MetadataLabeler,
    MetadataSerializer,
    image_statistics,
    to_bin,
)


class TestMetadata(ModalityPluginTests):
    modality = "metadata"
    crop_invariant = True  # image statistics describe the whole image

    def assert_serialized_close(self, raw, back):
        """Metadata is binned per key: the same keys come back, each value in the bin of the original."""
        from fourm_metadata.components import to_bin

        assert set(back) == set(raw), f"metadata: keys {sorted(raw)} came back as {sorted(back)}"
        for key, value in raw.items():
            assert to_bin(key, back[key]) == to_bin(key, value), f"metadata: {key}={value} -> {back[key]}"

    def example_raw(self):
        raws = MetadataLabeler()({"rgb": sample_photos(2)})
        raws.append({"n_humans": 3, "original_width": 640, "aesthetic_score": 5.2, "watermark_score": 0.1})
        return raws


def test_statistics_of_known_images():
    flat = np.full((64, 64, 3), 128, np.uint8)
    s = image_statistics(flat)
    assert s["brightness"] == pytest.approx(128, abs=0.5) and s["contrast"] == 0 and s["entropy"] == 0
    assert s["saturation"] == 0 and s["colorfulness"] == 0 and s["edge_density"] == 0 and s["sharpness"] == 0
    checker = (np.indices((64, 64)).sum(0) // 8 % 2 * 255).astype(np.uint8)
    c = image_statistics(np.repeat(checker[..., None], 3, 2))
    assert c["contrast"] == pytest.approx(127.5, abs=0.5) and c["entropy"] == pytest.approx(1.0, abs=1e-6)
    assert c["edge_density"] > 0.1 and c["sharpness"] > 3
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    r = image_statistics(red)
    assert r["saturation"] == 255 and r["colorfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5), abs=1e-3)
    # a real photo is more colourful and has more edges than its blurred grey version
    import cv2

    photo = sample_photos(1)[0]
    grey = np.repeat(cv2.GaussianBlur(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), (9, 9), 3)[..., None], 3, 2)
    p, g = image_statistics(photo), image_statistics(grey)
    assert p["colorfulness"] > g["colorfulness"] and p["sharpness"] > g["sharpness"] and p["edge_density"] > g["edge_density"]


def test_counts_from_optional_inputs():
    photos = sample_photos(2)
    seg = np.zeros((256, 256, 1), np.uint8)
    seg[:10] = 3
    seg[-10:] = 255
    out = MetadataLabeler()({
        "rgb": photos,
        "caption": ["A cat. It sleeps!", "dog"],
        "det": [{"boxes": [[0, 0, 1, 1]] * 3, "classes": ["cat", "cat", "dog"], "scores": [0.9, 0.8, 0.1]},
                {"boxes": [], "classes": [], "scores": []}],
        "human_pose": [{"format": "coco17", "persons": [{}, {}]}, {"format": "coco17", "persons": []}],
        "sam_instance": [[1, 2, 3, 4], {"instances": []}],
        "semseg": [seg, seg[:5]],
    })
    a, b = out
    assert a["caption_n_words"] == 4 and a["caption_n_sentences"] == 2 and a["caption_n_chars"] == 17
    assert a["n_coco_instances"] == 2 and a["coco_instance_diversity"] == 1 and b["n_coco_instances"] == 0
    assert a["n_humans"] == 2 and b["n_humans"] == 0 and a["n_sam_instances"] == 4 and b["n_sam_instances"] == 0
    assert a["semantic_diversity"] == 2 and b["semantic_diversity"] == 1


def test_serialization_uses_4m21_key_ids_and_is_deterministic():
    raw = {"brightness": 255.0, "n_humans": 2}
    text = MetadataSerializer().to_text(raw)
    assert sorted(text.split(" ")) == sorted(["v1=10", "v0=49", "v1=5", "v0=2"])
    assert all(MetadataSerializer().to_text(dict(reversed(list(raw.items())))) == text for _ in range(3))
    # bin 49 of a float key is only the top of its range: it parses back to vmax
    assert MetadataSerializer().from_text(text) == {"brightness": 255.0, "n_humans": 2}


def test_orders_given_and_random_are_4m21s():
    """Catches the two other chunk orders: the raw's key order, and Python's random.shuffle of it."""
    import random

    raw = {"n_humans": 2, "brightness": 255.0, "original_width": 640, "entropy": 0.0}
    given = ["v1=5 v0=2", "v1=10 v0=49", "v1=0 v0=20", "v1=13 v0=0"]
    assert MetadataSerializer(order="given").to_chunks(raw) == given
    keys = list(raw)
    random.Random(3).shuffle(keys)
    want = [given[list(raw).index(k)] for k in keys]
    assert MetadataSerializer(order="random", rng=random.Random(3)).to_chunks(raw) == want
    assert MetadataSerializer(order="given", max_chunks=2).to_text(raw) == "v1=5 v0=2 v1=10 v0=49"
    with pytest.raises(ValueError, match="order must be one of seeded, random, given"):
        MetadataSerializer(order="sorted")


values = {k: st.floats(-10, 1000, allow_nan=False) for k in KEYS}
values.update({k: st.integers(0, 2000) for k in INT_KEYS})
values.update({k: st.integers(0, 50000) for k in ("original_width", "original_height")})
raws = st.dictionaries(st.sampled_from(sorted(KEYS)), st.none(), max_size=len(KEYS)).flatmap(
    lambda d: st.fixed_dictionaries({k: values[k] for k in d}))


@settings(max_examples=200, deadline=None)
@given(raws)
def test_round_trip_up_to_binning(raw):
    ser = MetadataSerializer()
    text = ser.to_text(raw)
    back = ser.from_text(text)
    assert len(text.split()) == 2 * len(raw)  # every key (the tokenizer cuts at max_length)
    kept = list(raw)
    assert sorted(back) == sorted(kept)
    for k in kept:
        assert to_bin(k, back[k]) == to_bin(k, raw[k])  # identical up to the bin
        if k in FLOAT_BINS:
            vmin, vmax, n = FLOAT_BINS[k]
            step = (vmax - vmin) / (n - 1)  # 49 steps; the last bin is vmax alone
            assert abs(back[k] - min(max(raw[k], vmin), vmax)) <= step / 2 + 1e-9
        elif k in INT_KEYS:
            assert back[k] == min(raw[k], 999)
    assert ser.to_text(back) == text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.lists(st.sampled_from(["v1=10", "v0=3", "v0=70", "v1=99", "v1=19", "v0=1", "v2=4", "size"]),
                          max_size=20).map(" ".join)))
def test_garbage_never_crashes_the_parser(text):
    try:
        raw = MetadataSerializer().from_text(text)
    except ValueError as exc:
        assert "'metadata'" in str(exc)
    else:
        assert set(raw) <= set(KEYS)


def test_errors_name_key_and_token():
    with pytest.raises(ValueError, match="unknown metadata key 'shoe_size'"):
        MetadataSerializer().to_text({"shoe_size": 3})
    with pytest.raises(ValueError, match=r"'v0=2'.*watermark_score"):
        MetadataSerializer().from_text("v1=19 v0=2")
    with pytest.raises(ValueError, match="appears twice"):
        MetadataSerializer().from_text("v1=5 v0=1 v1=5 v0=2")
    assert set(MANUAL_BINS) <= set(KEYS)
