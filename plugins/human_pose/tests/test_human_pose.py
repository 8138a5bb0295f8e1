"""Tests of the human_pose plugin: the contract kit plus keypoint serialization and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_core.testing import ModalityPluginTests, sample_photos

from fourm_det.testing import save_tiny_detr
from fourm_human_pose.components import (
    KEYPOINT_NAMES,
    HumanPoseLabeler,
    HumanPoseSerializer,
    HumanPoseTransform,
    visualize,
)
from fourm_human_pose.testing import save_tiny_vitpose


def person(x0=0.2, y0=0.1, x1=0.6, y1=0.9, score=0.9, visible=range(17)):
    kps = [[0.0, 0.0, 0]] * 17
    for j in visible:
        kps[j] = [x0 + (x1 - x0) * (0.3 + 0.4 * (j % 2)), y0 + (y1 - y0) * j / 17, 2]
    return {"box": [x0, y0, x1, y1], "score": score, "keypoints": kps}


EXAMPLES = [
    {"format": "coco17", "persons": [person(), person(0.5, 0.5, 0.9, 0.95, 0.7, visible=[0, 5, 6, 11])]},
    {"format": "coco17", "persons": []},
]


class TestHumanPose(ModalityPluginTests):
    modality = "human_pose"

    def crop_cases(self):
        """One person (box of raw pixels 64..128) with only its left eye visible, at raw pixel (80, 96), seen
        through the crop (top 16, left 8, 224 x 216): x -> (x - 8) / 216, y -> (y - 16) / 224; flipped, x mirrors
        and the left eye becomes the right eye."""
        kps = [[0.0, 0.0, 0]] * 17
        left, right = KEYPOINT_NAMES.index("left_eye"), KEYPOINT_NAMES.index("right_eye")
        kps[left] = [80 / 256, 96 / 256, 2]
        raw = {"format": "coco17", "persons": [{"box": [0.25, 0.25, 0.5, 0.5], "score": 0.8, "keypoints": kps}]}
        box = (16, 8, 224, 216)
        x0, x1, y0, y1 = 56 / 216, 120 / 216, 48 / 224, 112 / 224

        def expected(flip):
            k = [[0.0, 0.0, 0]] * 17
            k[right if flip else left] = [1 - 72 / 216 if flip else 72 / 216, 80 / 224, 2]
            b = [1 - x1, y0, 1 - x0, y1] if flip else [x0, y0, x1, y1]
            return {"format": "coco17", "persons": [{"box": b, "score": 0.8, "keypoints": k}], "image_size": [224, 224]}

        return [(raw, box, False, (224, 224), expected(False)), (raw, box, True, (224, 224), expected(True))]

    def assert_serialized_close(self, raw, back):
        """Same persons in the same order, which keypoints are visible unchanged, box and keypoint coordinates
        within half a bin (5e-4) of the 1000 bins."""
        assert back["format"] == raw["format"] and len(back["persons"]) == len(raw["persons"])
        for p, q in zip(raw["persons"], back["persons"]):
            kp, kq = np.asarray(p["keypoints"], float), np.asarray(q["keypoints"], float)
            assert ((kp[:, 2] > 0) == (kq[:, 2] > 0)).all(), f"human_pose: visibility {kp[:, 2]} -> {kq[:, 2]}"
            vis = kp[:, 2] > 0
            assert np.abs(np.asarray(p["box"]) - q["box"]).max() <= 5e-4 + 1e-9
            assert np.abs(kp[vis, :2] - kq[vis, :2]).max(initial=0) <= 5e-4 + 1e-9

    def example_raw(self):
        return [dict(e) for e in EXAMPLES]

    def make_labeler(self, tmp_path):
        return HumanPoseLabeler(weights=save_tiny_vitpose(tmp_path / "pose"),
                                detector_weights=save_tiny_detr(tmp_path / "det"), batch_size=2)


def test_layout_box_then_keypoints_or_none():
    text = HumanPoseSerializer().to_text({"format": "coco17", "persons": [person(visible=[0])]})
    toks = text.split()
    assert toks[:5] == ["human", "v0=200", "v1=100", "v2=600", "v3=900"]
    assert toks[5:7] == ["v0=320", "v1=100"] and toks[7:] == ["none"] * 16
    assert HumanPoseSerializer().to_text(EXAMPLES[1]) == "none"
    assert HumanPoseSerializer().from_text("none") == EXAMPLES[1]


coord = st.floats(0, 1)
kp = st.one_of(st.tuples(coord, coord).map(lambda p: [p[0], p[1], 2]), st.just([0.0, 0.0, 0]))
person_st = st.builds(lambda a, b, kps, s: {"box": [min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])],
                                          "score": s, "keypoints": kps},
                      st.tuples(coord, coord), st.tuples(coord, coord), st.lists(kp, min_size=17, max_size=17),
                      st.floats(0, 1))
pose_st = st.lists(person_st, max_size=6).map(lambda ps: {"format": "coco17", "persons": ps})


@settings(max_examples=80, deadline=None)
@given(pose_st)
def test_round_trip_up_to_binning(raw):
    ser = HumanPoseSerializer()
    text = ser.to_text(raw)
    back = ser.from_text(text)
    assert len(back["persons"]) == len(raw["persons"])
    assert len(text.split()) <= 6 * 39 < 263
    for p in back["persons"]:  # every parsed person matches an original one up to the bin width
        errs = []
        for q in raw["persons"]:
            kb, kq = np.asarray(p["keypoints"]), np.asarray(q["keypoints"])
            if ((kb[:, 2] > 0) != (kq[:, 2] > 0)).any():
                continue
            errs.append(max(np.abs(np.asarray(p["box"]) - q["box"]).max(), np.abs(kb[:, :2] - kq[:, :2]).max()))
        assert errs and min(errs) <= 5e-4 + 1e-9
    assert ser.to_text(back) == text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60),
                 st.lists(st.sampled_from(["human", "none", "v0=1", "v1=2", "v2=3", "v3=4", "v0=1000", "pose"]),
                          max_size=45).map(" ".join)))
def test_garbage_never_crashes_the_parser(text):
    try:
        raw = HumanPoseSerializer().from_text(text)
    except ValueError as exc:
        assert "'human_pose'" in str(exc)
    else:
        assert all(len(p["keypoints"]) == 17 for p in raw["persons"])


def test_flip_mirrors_x_and_swaps_left_right():
    raw = {"format": "coco17", "persons": [person(visible=[0, 1, 5])]}
    t = HumanPoseTransform(raw_size=256)
    full = (0, 0, 256, 256)
    same = t.crop(raw, box=full, flip=False)
    assert np.allclose(same["persons"][0]["keypoints"], raw["persons"][0]["keypoints"])
    flipped = t.crop(raw, box=full, flip=True)["persons"][0]
    k0, k1 = np.asarray(raw["persons"][0]["keypoints"]), np.asarray(flipped["keypoints"])
    li, ri = KEYPOINT_NAMES.index("left_eye"), KEYPOINT_NAMES.index("right_eye")
    assert k1[ri, 2] == 2 and k1[li, 2] == 0  # the left eye became the right eye
    assert np.isclose(k1[ri, 0], 1 - k0[li, 0]) and np.isclose(k1[ri, 1], k0[li, 1])
    assert np.isclose(k1[0, 0], 1 - k0[0, 0])
    assert np.allclose(flipped["box"], [0.4, 0.1, 0.8, 0.9])


def test_crop_drops_outside_keypoints_and_persons():
    raw = {"format": "coco17", "persons": [person(0.0, 0.0, 0.4, 0.9), person(0.8, 0.8, 1.0, 1.0)]}
    out = HumanPoseTransform(raw_size=256).crop(raw, box=(0, 0, 128, 256), flip=False)  # top half
    assert len(out["persons"]) == 1
    k = np.asarray(out["persons"][0]["keypoints"])
    src = np.asarray(raw["persons"][0]["keypoints"])
    assert ((k[:, 2] > 0) == (src[:, 1] <= 0.5)).all()
    assert np.allclose(k[k[:, 2] > 0, 1], src[src[:, 1] <= 0.5, 1] * 2)


def test_labeler_with_tiny_models(tmp_path):
    lab = HumanPoseLabeler(weights=save_tiny_vitpose(tmp_path / "p"), detector_weights=save_tiny_detr(tmp_path / "d"),
                           batch_size=2, max_persons=3)
    out = lab({"rgb": sample_photos(3)})
    assert len(out) == 3
    for raw in out:
        assert 1 <= len(raw["persons"]) <= 3
        for p in raw["persons"]:
            k = np.asarray(p["keypoints"])
            assert k.shape == (17, 3) and set(k[:, 2]) <= {0, 2} and (k[:, :2] >= 0).all() and (k[:, :2] <= 1).all()
        HumanPoseSerializer().to_text(raw)


def test_a_text_cut_at_max_length_drops_only_the_last_person():
    ser = HumanPoseSerializer()
    text = ser.to_text({"format": "coco17", "persons": [person(), person(0.5, 0.5, 0.9, 0.9)]})
    cut = " ".join(text.split()[:-10])
    assert len(ser.from_text(cut)["persons"]) == 1
    with pytest.raises(ValueError, match="'human'"):
        ser.from_text(cut + " v0=1 human")


def test_errors_and_visualizer():
    with pytest.raises(ValueError, match="format 'smpl'"):
        HumanPoseSerializer().to_text({"format": "smpl", "persons": []})
    with pytest.raises(ValueError, match=r"'human_pose'.*'v3=3' at position 3"):
        HumanPoseSerializer().from_text("human v0=1 v1=2 v3=3 v2=3")
    img = visualize(EXAMPLES[0], image=sample_photos(1)[0])
    assert img.mode == "RGB" and img.size == (256, 256)
