"""Tests of the det plugin: the contract kit plus box serialization and crop properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_core.testing import ModalityPluginTests, sample_photos

from fourm_core.plugin_kit.seqtext import class_words

from fourm_det.classes import COCO_CLASS_TOKENS
from fourm_det.components import DetectionLabeler, DetectionSerializer, DetectionTransform, visualize
from fourm_det.testing import save_tiny_detr

EXAMPLES = [
    {"boxes": [[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 0.3, 0.3], [0.6, 0.1, 0.95, 0.4]],
     "classes": ["person", "traffic light", "dog"], "scores": [0.98, 0.7, 0.4]},
    {"boxes": [], "classes": [], "scores": []},
]


class TestDet(ModalityPluginTests):
    modality = "det"

    def example_raw(self):
        return [dict(e) for e in EXAMPLES]

    def make_labeler(self, tmp_path):
        return DetectionLabeler(weights=save_tiny_detr(tmp_path / "detr"), batch_size=2)

    def crop_cases(self):
        """A box of raw pixels x 64..128, y 64..128 seen through the crop (top 16, left 8, 224 x 216): x -> (x - 8)
        / 216, y -> (y - 16) / 224, mirrored when flipped; a box left of the crop is dropped."""
        raw = {"boxes": [[0.25, 0.25, 0.5, 0.5], [0.0, 0.9, 0.02, 1.0]], "classes": ["cat", "dog"],
               "scores": [0.9, 0.8]}
        box = (16, 8, 224, 216)
        x0, x1, y0, y1 = 56 / 216, 120 / 216, 48 / 224, 112 / 224
        plain = {"boxes": [[x0, y0, x1, y1]], "classes": ["cat"], "scores": [0.9], "image_size": [224, 224]}
        flipped = {**plain, "boxes": [[1 - x1, y0, 1 - x0, y1]]}
        return [(raw, box, False, (224, 224), plain), (raw, box, True, (224, 224), flipped)]

    def assert_serialized_close(self, raw, back):
        """The serializer keeps the boxes scoring >= 0.6 (the others are evidence for the store only), each class
        as its words and each coordinate within half a step (0.5 / 999) of round(v * 999)."""
        kept = sorted((class_words(c), b) for c, b, s in zip(raw["classes"], raw["boxes"], raw["scores"]) if s >= 0.6)
        got = sorted(zip(back["classes"], back["boxes"]))
        assert [c for c, _ in got] == [c for c, _ in kept], f"det: classes {kept} came back as {got}"
        for (_, b0), (_, b1) in zip(kept, got):
            assert np.abs(np.asarray(b0) - b1).max() <= 0.5 / 999 + 1e-9, f"det: box {b0} came back as {b1}"


def test_serialization_order_threshold_and_tokens():
    text = DetectionSerializer().to_text(EXAMPLES[0])
    # the dog (0.4) is dropped; the box nearest the origin comes first; round(v * 999): 0.9 -> 899, 0.5 -> 500
    assert text == "v0=0 v1=0 v2=300 v3=300 traffic light v0=100 v1=200 v2=500 v3=899 person"
    back = DetectionSerializer().from_text(text)
    assert back["classes"] == ["traffic light", "person"] and back["scores"] == [1.0, 1.0]
    assert np.allclose(back["boxes"][1], [0.1, 0.2, 0.5, 0.9], atol=0.5 / 999 + 1e-9)
    assert DetectionSerializer().to_text(EXAMPLES[1]) == ""
    assert DetectionSerializer().from_text("") == {**EXAMPLES[1], "ordered": True}


def test_max_boxes_keeps_the_best_and_fits_max_length():
    rng = np.random.default_rng(0)
    n = 80
    xy = rng.random((n, 2)) * 0.5
    raw = {"boxes": np.concatenate([xy, xy + 0.4], 1).tolist(), "classes": ["hair_drier"] * n,
           "scores": np.linspace(0.6, 1.0, n).tolist()}
    text = DetectionSerializer().to_text(raw)
    # 50 boxes of 4 coordinates and the one token 'hair drier': 250 tokens <= 256
    assert text.count(" hair drier") == 50 and len(text.split()) == 50 * 6
    assert min(DetectionSerializer().from_text(text)["boxes"], key=lambda b: b[0])[0] >= 0


box01 = st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted)
class_name = st.one_of(st.sampled_from(COCO_CLASS_TOKENS), st.from_regex(r"[a-z]{1,6}(_[a-z]{1,6}){0,2}", fullmatch=True))
det_raw = st.lists(st.tuples(box01, box01, class_name, st.floats(0.6, 1.0)), max_size=50).map(
    lambda items: {"boxes": [[x[0], y[0], x[1], y[1]] for x, y, _, _ in items], "classes": [c for *_, c, _ in items],
                   "scores": [s for *_, s in items]})


@settings(max_examples=150, deadline=None)
@given(det_raw)
def test_round_trip_up_to_binning(raw):
    ser = DetectionSerializer()
    text = ser.to_text(raw)
    back = ser.from_text(text)
    assert len(back["boxes"]) == len(raw["boxes"])
    # the same multiset of (class, box) up to the bin width
    assert sorted(class_words(c) for c in raw["classes"]) == sorted(back["classes"])
    for b in back["boxes"]:
        assert min(np.abs(np.asarray(raw["boxes"]) - b).max(1)) <= 0.5 / 999 + 1e-9
    assert ser.to_text(back) == text
    if set(back["classes"]) <= set(COCO_CLASS_TOKENS):  # one token per class
        assert len(text.split()) - sum(c.count(" ") for c in back["classes"]) <= 250


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80),
                 st.lists(st.sampled_from(["v0=1", "v1=3", "v2=10", "v3=999", "v3=1000", "v4=1", "person", "big", "car"]),
                          max_size=30).map(" ".join)))
def test_garbage_never_crashes_the_parser(text):
    try:
        raw = DetectionSerializer().from_text(text)
    except ValueError as exc:
        assert "'det'" in str(exc)
    else:
        assert len(raw["boxes"]) == len(raw["classes"])


def test_parse_errors_name_the_token():
    with pytest.raises(ValueError, match=r"'det'.*'person'.*position 2"):
        DetectionSerializer().from_text("v0=1 v1=2 person")
    with pytest.raises(ValueError, match=r"'det'.*class name"):
        DetectionSerializer().from_text("v0=1 v1=2 v2=3 v3=4 v0=5 v1=2 v2=3 v3=4 cat")


def test_a_text_cut_at_max_length_drops_only_the_last_box(caplog):
    text = "v0=1 v1=2 v2=3 v3=4 cat v0=5 v1=6 v2=7"
    assert DetectionSerializer().from_text(text)["classes"] == ["cat"]
    assert DetectionSerializer().from_text("v0=1 v1=2 v2=3 v3=4 cat v0=5 v1=6 v2=7 v3=8")["classes"] == ["cat"]
    assert "incomplete last box" in caplog.text or "no class" in caplog.text


def test_crop_and_flip_move_boxes():
    raw = {"boxes": [[0.25, 0.25, 0.5, 0.5], [0.9, 0.9, 1.0, 1.0]], "classes": ["cat", "dog"], "scores": [0.9, 0.9]}
    t = DetectionTransform(raw_size=256)
    out = t.crop(raw, box=(0, 0, 128, 128), flip=False, size=(224, 224))  # top-left quarter
    assert out["classes"] == ["cat"] and np.allclose(out["boxes"][0], [0.5, 0.5, 1.0, 1.0])
    out = t.crop(raw, box=(0, 0, 128, 128), flip=True, size=(224, 224))
    assert np.allclose(out["boxes"][0], [0.0, 0.5, 0.5, 1.0])
    full = t.crop(raw, box=(0, 0, 256, 256), flip=False)
    assert np.allclose(full["boxes"], raw["boxes"])


def test_labeler_finds_boxes_with_tiny_detr(tmp_path):
    lab = DetectionLabeler(weights=save_tiny_detr(tmp_path / "d"), batch_size=3)
    out = lab({"rgb": sample_photos(4)})
    assert len(out) == 4
    for raw in out:
        assert raw["boxes"] and set(raw["classes"]) <= set(COCO_CLASS_TOKENS)
        b = np.asarray(raw["boxes"])
        assert (b >= 0).all() and (b <= 1).all() and (b[:, 2:] >= b[:, :2]).all()
        assert all(s >= 0.3 for s in raw["scores"])


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(Exception, match="not available locally|does not exist"):
        DetectionLabeler(weights="nobody/no-such-detector")
    with pytest.raises(Exception, match="does not exist"):
        DetectionLabeler(weights=str(tmp_path / "missing"))


def test_visualizer_draws_on_an_image():
    img = visualize(EXAMPLES[0], image=sample_photos(1)[0])
    assert img.size == (256, 256) and img.mode == "RGB"


def test_crop_uses_the_recorded_image_size():
    raw = {"boxes": [[0.25, 0.25, 0.5, 0.5]], "classes": ["cat"], "scores": [0.9], "image_size": [64, 64]}
    out = DetectionTransform(raw_size=256).crop(raw, box=(0, 0, 32, 32), flip=False, size=(224, 224))
    assert np.allclose(out["boxes"][0], [0.5, 0.5, 1.0, 1.0]) and out["image_size"] == [224, 224]
    # the crop's output can be cropped again (its own image_size)
    assert DetectionTransform().crop(out, box=(0, 0, 112, 112), flip=False)["boxes"] == []
    again = DetectionTransform().crop(out, box=(112, 112, 112, 112), flip=False)
    assert np.allclose(again["boxes"][0], [0.0, 0.0, 1.0, 1.0])
