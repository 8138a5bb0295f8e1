"""Tests of the smpl_pose plugin (4M-21's human_poses): the contract kit, the literal text layout, parsing
4M-21's own strings, and the missing labeler's error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fourm_core.plugin_kit.seqtext import SerializationError
from fourm_core.testing import ModalityPluginTests
from fourm_smpl_pose.components import SmplPoseSerializer, SmplPoseTransform, from_hmr2

RELEASE = Path(os.environ.get("FOURM_RELEASE_DIR")
               or Path(__file__).resolve().parents[4] / "shared" / "conformance" / "ml4m_release")
SERIALIZATION = RELEASE / "text" / "serialization.json"
needs_release = pytest.mark.requires(
    "conformance", available=SERIALIZATION.exists(),
    reason=f"reference release set {RELEASE} (text/serialization.json) not present; put shared/ beside the "
           f"checkout or set FOURM_RELEASE_DIR")


def human(box, seed=0, **kw):
    rng = np.random.default_rng(seed)
    h = {"box": list(box), "pose": rng.integers(0, 1024, 8).tolist(), "global": rng.uniform(-1, 1, 9).tolist(),
         "camera": rng.uniform(-1, 19, 3).tolist(), "shape": rng.uniform(-3, 3, 10).tolist()}
    return {**h, **kw}


EXAMPLES = [{"humans": [human([0.1, 0.2, 0.5, 0.9]), human([0.6, 0.1, 0.95, 0.8], seed=1)]}, {"humans": []}]
#: half a step of each group's quantisation
TOLERANCE = {"box": 0.5 / 999, "global": 0.5 / 499.5, "camera": 0.5 / 49.95, "shape": 0.5 / 166.5}


class TestSmplPose(ModalityPluginTests):
    modality = "smpl_pose"

    def example_raw(self):
        return [json.loads(json.dumps(e)) for e in EXAMPLES]

    def crop_cases(self):
        """A human whose box covers raw pixels x 64..128, y 64..128, seen through the crop (top 16, left 8,
        224 x 216): x -> (x - 8) / 216, y -> (y - 16) / 224, mirrored when flipped; a human left of the crop
        is dropped; the SMPL parameters are kept."""
        a, b = human([0.25, 0.25, 0.5, 0.5]), human([0.0, 0.9, 0.02, 1.0], seed=3)
        raw = {"humans": [a, b]}
        box = (16, 8, 224, 216)
        x0, x1, y0, y1 = 56 / 216, 120 / 216, 48 / 224, 112 / 224
        plain = {"humans": [{**a, "box": [x0, y0, x1, y1]}]}
        flipped = {"humans": [{**a, "box": [1 - x1, y0, 1 - x0, y1]}]}
        return [(raw, box, False, (224, 224), plain), (raw, box, True, (224, 224), flipped)]

    def assert_serialized_close(self, raw, back):
        """Every human comes back in order: pose ids exactly, the rest within half a quantisation step
        (continuous groups clipped to their ranges first)."""
        ranges = {"global": (-1, 1), "camera": (-1, 19), "shape": (-3, 3), "box": (0, 1)}
        assert len(back["humans"]) == len(raw["humans"])
        for h0, h1 in zip(raw["humans"], back["humans"]):
            assert h1["pose"] == h0["pose"] and sorted(h1["order"]) == ["camera", "global", "pose", "shape"]
            for g, tol in TOLERANCE.items():
                want = np.clip(h0[g], *ranges[g])
                assert np.abs(np.asarray(h1[g]) - want).max() <= tol + 1e-9, (g, h0[g], h1[g])


def test_text_layout_is_pinned():
    """Catches changes of the layout: 'human', box round(v*999), then pose (ids >= 512 as v1=id-512), global
    round(499.5 g + 499.5), camera round(49.95 clip(c, -1, 19) + 49.95), shape round(166.5 b + 499.5)."""
    raw = {"humans": [{"box": [0.0, 0.5, 1.0, 1.0], "pose": [0, 511, 512, 1023, 5, 6, 7, 8],
                       "global": [-1, 0, 1, 0.5, -0.5, 0, 0, 0, 2], "camera": [-2, 0, 19], "shape": [-3, 0, 3] + [0] * 7}]}
    text = SmplPoseSerializer(order="fixed").to_text(raw)
    assert text == ("human v0=0 v1=500 v2=999 v3=999 pose v0=0 v0=511 v1=0 v1=511 v0=5 v0=6 v0=7 v0=8 "
                    "global v0=0 v0=500 v0=999 v0=749 v0=250 v0=500 v0=500 v0=500 v0=999 "
                    "camera v0=0 v0=50 v0=999 shape v0=0 v0=500 v0=999" + " v0=500" * 7)
    assert SmplPoseSerializer().to_text({"humans": []}) == "none"
    assert SmplPoseSerializer().from_text("none") == {"humans": []} == SmplPoseSerializer().from_text("")
    # a human's recorded order wins over the serializer's
    ordered = {"humans": [{**raw["humans"][0], "order": ["shape", "camera", "global", "pose"]}]}
    assert SmplPoseSerializer().to_text(ordered).split()[5] == "shape"


def test_group_orders():
    """Catches the orders: seeded (same raw, same text), random (torch.randperm(4) indexing pose, global,
    camera, shape, per human), fixed."""
    raw = EXAMPLES[0]
    seeded = SmplPoseSerializer()
    assert seeded.to_text(raw) == seeded.to_text(json.loads(json.dumps(raw)))
    g = torch.Generator().manual_seed(11)
    perms = [torch.randperm(4, generator=g).tolist() for _ in range(2)]
    text = SmplPoseSerializer(order="random", rng=torch.Generator().manual_seed(11)).to_text(raw)
    names = ["pose", "global", "camera", "shape"]
    got = [w for w in text.split() if w in names]
    assert got == [names[k] for p in perms for k in p]
    with pytest.raises(ValueError, match="order must be one of seeded, random, fixed"):
        SmplPoseSerializer(order="sorted")


@pytest.mark.parametrize(("text", "pattern"), [
    ("human v0=1 v1=2 v2=3 v3=4 pose v0=1", r"ends after"),
    ("person v0=1", r"token 'person' at position 0: expected 'human'"),
    ("human v0=1 v1=2 v2=3 v3=4 pose" + " v0=1" * 8 + " pose", r"token 'pose' at position 14"),
    ("human v0=1 v1=2 v2=3 v3=4 global v1=3", r"token 'v1=3' at position 6: expected a 'global' value"),
])
def test_malformed_text_raises(text, pattern):
    ser = SmplPoseSerializer()
    if pattern == "ends after":  # a single cut human: nothing is left, the cut part is dropped
        assert ser.from_text(text) == {"humans": []}
        return
    with pytest.raises(SerializationError, match=pattern):
        ser.from_text(text)


def test_a_text_cut_at_max_length_drops_only_the_last_human(caplog):
    ser = SmplPoseSerializer()
    text = ser.to_text(EXAMPLES[0])
    words = text.split()
    back = ser.from_text(" ".join(words[:-3]))
    assert len(back["humans"]) == 1 and back["humans"][0]["pose"] == EXAMPLES[0]["humans"][0]["pose"]
    assert "incomplete last human" in caplog.text


@pytest.mark.parametrize(("raw", "pattern"), [
    ([], r"raw must be a dict \{'humans': \[\.\.\.\]\}"),
    ({"humans": [{"box": [0, 0, 1, 1]}]}, r"human 0 must be a dict with 'box', 'pose'"),
    ({"humans": [human([0, 0, 1.2, 1])]}, r"human 0: 'box' must be 4 finite numbers in \[0, 1\]"),
    ({"humans": [human([0, 0, 1, 1], pose=[1024] * 8)]}, r"human 0: 'pose' must be 8 ints 0\.\.1023"),
    ({"humans": [human([0, 0, 1, 1], shape=[0.0] * 9)]}, r"human 0: 'shape' must be 10 finite numbers"),
    ({"humans": [human([0, 0, 1, 1], order=["pose"])]}, r"human 0: 'order' must be a permutation"),
])
def test_bad_raw_names_the_field(raw, pattern):
    with pytest.raises(SerializationError, match=r"^modality 'smpl_pose': " + pattern):
        SmplPoseSerializer().to_text(raw)


def test_from_hmr2_normalises_boxes():
    sample = {"bbox_xyxy": [[64.0, 48.0, 320.0, 480.0]], "pose_tokenized": [[1, 2, 3, 4, 5, 6, 7, 8]],
              "pred_cam": [[1.0, 0.1, 0.2]],
              "pred_smpl_params": {"global_orient": [[np.eye(3).tolist()]], "betas": [[0.5] * 10],
                                   "body_pose": [[np.eye(3).tolist()] * 23]}}
    raw = from_hmr2(sample, (480, 640))
    assert raw["humans"][0]["box"] == [0.1, 0.1, 0.5, 1.0]
    assert raw["humans"][0]["global"] == np.eye(3).reshape(-1).tolist() and raw["humans"][0]["pose"][0] == 1
    assert from_hmr2({}, (480, 640)) == {"humans": []}
    with pytest.raises(SerializationError, match="HMR2 sample must have bbox_xyxy"):
        from_hmr2({"bbox_xyxy": [[0, 0, 1, 1]]}, (10, 10))


def test_no_labeler_and_the_label_job_says_so(tmp_path):
    """HMR2 does not run here: the spec has no labeler, and a label job for human_poses says so."""
    from PIL import Image

    from fourm_core.data.jobs import ingest, label
    from fourm_core.testing import sample_photos
    from fourm_registry import get_modalities

    spec = get_modalities()["human_poses"]
    assert spec.name == "smpl_pose" and spec.labeler is None
    (tmp_path / "photos").mkdir()
    Image.fromarray(sample_photos(1)[0]).save(tmp_path / "photos" / "a.png")
    ingest(tmp_path / "photos", str(tmp_path / "s.zarr"), progress=False)
    with pytest.raises(Exception, match="'smpl_pose' .*has no pseudo-labeler"):
        label(str(tmp_path / "s.zarr"), ["human_poses"], progress=False)


@needs_release
def test_reads_and_writes_4m21s_strings():
    """Parse 4M-21's strings: to_text(from_text(s)) == s (up to the trailing space 4M-21 writes), and the
    raw replayed through from_hmr2, the crop and torch's generator gives the same string."""
    examples = json.loads(SERIALIZATION.read_text())["examples"]["human_poses"]
    assert examples
    ser = SmplPoseSerializer()
    for e in examples:
        s = " ".join(e["string"].split())
        assert ser.to_text(ser.from_text(e["string"])) == s
        replay = SmplPoseSerializer(order="random", rng=torch.Generator().manual_seed(e.get("torch_seed", 0)))
        raw = from_hmr2(e["raw"], (480, 640)) if e["raw"] else {"humans": []}
        if raw["humans"]:
            assert "(0, 0, 480, 640), False, (480, 640)" in e["call"]
            raw = SmplPoseTransform().crop(raw, (0, 0, 480, 640), raw_size=(480, 640))
        assert replay.to_text(raw) == s
