"""sam_instance: contract tests, run-length masks, crops, the per-point serializer (hypothesis), the SAM
runner with a tiny randomly initialised ``SamModel`` (saved and loaded back), and the mask tokenizer.

Example raws are real photos segmented by Felzenszwalb's graph-based algorithm (scikit-image): real,
irregular instance masks, stored exactly as the labeler stores SAM's.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fourm_core.testing import ModalityPluginTests, sample_photos
from fourm_sam_instance import masks as M
from fourm_sam_instance.serializer import ENV_MASK_TOKENIZER, MASK_TOKENS, SamInstanceSerializer
from fourm_sam_instance.testing import photo_instances, save_tiny_sam

TINY_MASK_TOK = {"dim": 32, "depth": 1, "num_heads": 2, "codebook_size": 64}


@pytest.fixture(scope="session")
def mask_tokenizer_dir(tmp_path_factory):
    import torch

    from fourm_sam_instance.components import make_mask_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam_mask_tok")
    make_mask_tokenizer(**TINY_MASK_TOK).save_pretrained(path)
    return str(path)


@pytest.fixture(autouse=True)
def _mask_tokenizer_env(monkeypatch, mask_tokenizer_dir):
    """The serializer finds the (tiny) mask tokenizer through the documented environment variable."""
    monkeypatch.setenv(ENV_MASK_TOKENIZER, mask_tokenizer_dir)


class TestSamInstance(ModalityPluginTests):
    modality = "sam_instance"

    def crop_cases(self):
        """Masks on the 256 px raw through the crop (top 16, left 8, 224 x 216) at its own size: exactly the
        cut masks (mirrored when flipped); a mask above the crop is dropped."""
        masks = np.zeros((2, 256, 256), bool)
        masks[0, 48:112, 72:136] = True
        masks[1, 0:10, 240:256] = True
        raw = M.encode_instances(masks)
        box = (16, 8, 224, 216)
        cut = masks[:1, 16:240, 8:224]
        return [(raw, box, False, None, M.encode_instances(cut)),
                (raw, box, True, None, M.encode_instances(cut[:, :, ::-1]))]

    def serializer_raws(self):
        """Points-form raws (what the serializer writes; stored raws are sampled at random query points) with
        coordinates at whole pixels of the 224 crop, so raw -> text -> raw is exact."""
        c = lambda p: p / 224  # noqa: E731
        inst = {"box": [c(12), c(200), c(50), c(224)], "tokens": list(range(0, 32, 2))}
        return [{"points": [{"xy": [c(123), c(50)], "instances": [inst]}, {"xy": [c(200), c(7)], "instances": []}]},
                {"points": [{"xy": [c(0), c(223)], "instances": [inst, {**inst, "box": [c(1), c(2), c(3), c(4)]}]}]}]

    def example_raw(self):
        raws = [photo_instances(p) for p in sample_photos(2)]
        # the second sample carries mask tokens already (as after an earlier tokenization pass)
        raws[1]["instances"][0]["tokens"] = list(range(MASK_TOKENS))
        for inst in raws[1]["instances"][1:]:
            inst["tokens"] = [int(v) for v in np.arange(MASK_TOKENS) * 3 % 64]
        return raws

    def make_labeler(self, tmp_path):
        from fourm_sam_instance.components import SamInstanceLabeler

        return SamInstanceLabeler(weights=save_tiny_sam(tmp_path / "sam"), points_per_side=4, batch_size=2,
                                  pred_iou_thresh=-1e9, stability_score_thresh=0.0)


# -- masks --------------------------------------------------------------------------------------------
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_rle_round_trip(h, w, seed, density):
    mask = np.random.default_rng(seed).random((h, w)) < density
    rle = M.rle_encode(mask)
    assert sum(rle) == h * w and all(r >= 0 for r in rle)
    np.testing.assert_array_equal(M.rle_decode(rle, (h, w)), mask)


def test_rle_decode_rejects_corrupt_runs():
    with pytest.raises(ValueError, match="sam_instance.*re-label"):
        M.rle_decode([3, 4], (3, 3))


def test_boxes_and_boundaries_of_a_square():
    m = np.zeros((1, 20, 30), bool)
    m[0, 5:15, 10:25] = True
    np.testing.assert_array_equal(M.masks_to_boxes(m)[0], [10, 5, 25, 15])
    edge = M.boundaries(m)
    ring = m[0] & ~np.pad(m[0, 1:-1, 1:-1] & m[0, :-2, 1:-1] & m[0, 2:, 1:-1] & m[0, 1:-1, :-2] & m[0, 1:-1, 2:], 1)
    np.testing.assert_array_equal(edge, ring)
    assert edge.sum() == 2 * (10 + 15) - 4  # the square's outline, one pixel wide


def test_crop_follows_masks_and_drops_instances_outside():
    masks = np.zeros((3, 64, 64), bool)
    masks[0, 0:40, 0:40] = True  # large, partly inside
    masks[1, 10:20, 30:50] = True  # inside
    masks[2, 50:60, 0:10] = True  # outside the crop
    raw = M.encode_instances(masks)
    box = (8, 16, 32, 40)  # top, left, h, w
    out = M.crop_instances(raw, box, flip=True)
    got = M.decode_instances(out)
    expected = masks[:, 8:40, 16:56][:, :, ::-1]
    expected = expected[expected.reshape(3, -1).any(1)]
    assert out["size"] == [32, 40] and len(got) == 2
    order = np.argsort(-expected.reshape(2, -1).sum(1), kind="stable")
    np.testing.assert_array_equal(got, expected[order])
    for inst, m in zip(out["instances"], got):
        np.testing.assert_allclose(inst["box"], M.masks_to_boxes(m[None])[0] / [40, 32, 40, 32], atol=1e-6)
        assert "tokens" not in inst
    resized = M.crop_instances(raw, box, size=(64, 80))
    assert resized["size"] == [64, 80] and M.decode_instances(resized).shape == (2, 64, 80)


# -- serializer ---------------------------------------------------------------------------------------
coord = st.integers(0, 224).map(lambda p: p / 224)
instance = st.fixed_dictionaries({"box": st.lists(coord, min_size=4, max_size=4),
                                  "tokens": st.lists(st.integers(0, 1023), min_size=16, max_size=16)})
group = st.fixed_dictionaries({"xy": st.lists(coord, min_size=2, max_size=2),
                               "instances": st.lists(instance, max_size=3)})


@given(st.lists(group, max_size=7))
def test_points_form_round_trips(groups):
    ser = SamInstanceSerializer(max_tokens=10_000)
    raw = {"points": groups}
    text = ser.to_text(raw)
    back = ser.from_text(text)
    assert back == raw
    assert ser.to_text(back) == text


@given(st.lists(group, min_size=1, max_size=7), st.integers(3, 120))
def test_budget_leaves_out_whole_groups(groups, budget):
    ser = SamInstanceSerializer(max_tokens=budget)
    text = ser.to_text({"points": groups})
    assert len(text.split()) <= budget
    back = ser.from_text(text)["points"]
    assert all(g in groups for g in back)


vocab_words = st.sampled_from(["point", "polygon", "none", "v0=1", "v1=999", "v2=5", "v3=0", "v0=512", "v4=1",
                               "x", "v0=-1", "v0=1000", "v1=²", "=", "polygonpoint"])


@given(st.one_of(st.text(max_size=60), st.lists(vocab_words, max_size=40).map(" ".join)))
def test_random_text_never_crashes(text):
    ser = SamInstanceSerializer(strict=True)
    try:
        out = ser.from_text(text)
    except ValueError as exc:
        assert "sam_instance" in str(exc)
    else:
        assert ser.to_text(out) == " ".join(text.split())


def test_text_layout_and_errors():
    """4M-21's layout: pixels of the 224 crop, the point row first (v0=y v1=x), the box x0 y0 x1 y1."""
    ser = SamInstanceSerializer(strict=True)
    raw = {"points": [{"xy": [20 / 224, 40 / 224], "instances": []},
                      {"xy": [112 / 224, 100 / 224], "instances": [{"box": [0.0, 2 / 224, 1.0, 112 / 224],
                                                                    "tokens": [0, 511, 512, 1023] * 4}]}]}
    text = ser.to_text(raw)
    assert text.startswith("point v0=40 v1=20 none point v0=100 v1=112 polygon v0=0 v1=2 v2=224 v3=112 "
                           "v0=0 v0=511 v1=0 v1=511")
    assert len(text.split()) == 4 + 3 + 1 + 4 + 16
    with pytest.raises(ValueError, match="token 5 'v0=2'"):
        ser.from_text("point v0=1 v1=2 polygon v0=1 v0=2 v2=3 v3=4")
    with pytest.raises(ValueError, match="token 3 'point'"):
        ser.from_text("point v0=1 v1=2 point v0=1 v1=2 none")
    with pytest.raises(ValueError, match="ends inside"):
        ser.from_text(text.rsplit(" ", 3)[0])
    lenient = SamInstanceSerializer()  # the default: a text cut at max_length loses its last group
    assert lenient.from_text(text.rsplit(" ", 3)[0]) == {"points": raw["points"][:1]}
    with pytest.raises(ValueError, match="outside the 224-pixel crop"):
        ser.from_text("point v0=225 v1=2 none")
    with pytest.raises(ValueError, match=r"query point 0 must be 2 numbers in \[0, 1\]"):
        ser.to_text({"points": [{"xy": [1.5, 0.5], "instances": []}]})
    with pytest.raises(ValueError, match="outside 0..1023"):
        ser.to_text({"points": [{"xy": [0.5, 0.5], "instances": [{"box": [0, 0, 1, 1], "tokens": [1024] * 16}]}]})


def test_query_points_list_the_instances_that_contain_them(mask_tokenizer_dir):
    masks = np.zeros((2, 100, 100), bool)
    masks[0, :, :50] = True  # left half
    masks[1, :50, :] = True  # top half
    raw = M.encode_instances(masks)
    ser = SamInstanceSerializer(num_points=4, point_mode="grid")  # 4M-21's grid: pixels 74 and 149 of 224
    pts = ser.to_points(raw)["points"]
    assert [tuple(np.round(np.asarray(g["xy"]) * 224).astype(int)) for g in pts] == [(74, 74), (74, 149), (149, 74),
                                                                                     (149, 149)]
    hits = {tuple(np.round(g["xy"], 2)): len(g["instances"]) for g in pts}
    assert hits == {(0.33, 0.33): 2, (0.33, 0.67): 1, (0.67, 0.33): 1, (0.67, 0.67): 0}
    assert all(len(i["tokens"]) == 16 for g in pts for i in g["instances"])
    # shuffled as 4M-21 (points, then each point's instances, with Python's random)
    shuffled = SamInstanceSerializer(num_points=4, point_mode="grid", shuffle=True, seed=1).to_points(raw)["points"]
    assert sorted(map(str, shuffled)) == sorted(map(str, pts)) and shuffled != pts


def test_missing_mask_tokenizer_is_explained(monkeypatch):
    monkeypatch.delenv(ENV_MASK_TOKENIZER)
    raw = photo_instances(sample_photos(1)[0])
    with pytest.raises(ValueError, match=ENV_MASK_TOKENIZER):
        SamInstanceSerializer().to_text(raw)


def test_shared_text_tokenizer_has_no_unknown_tokens():
    from fourm_core.tokenizers import TextTokenizer
    from fourm_registry import get_modalities

    spec = get_modalities()["sam_instance"]
    ser = spec.serializer.build(seed=0)
    texts = [ser.to_text(r) for r in TestSamInstance().example_raw()]
    assert any("polygon" in t for t in texts)
    text_tok = TextTokenizer.train(["a photo of a cat"], special_tokens=list(spec.special_tokens), vocab_size=200)
    ids = text_tok.encode(texts, spec.max_length)
    assert not bool((ids == 1).any()), "serializer output contains [UNK]"
    assert ser.from_text(text_tok.decode(ids)[0]) == ser.from_text(texts[0])


# -- SAM runner / labeler -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("sam"))


def test_runner_outputs_consistent_instances(tiny_sam):
    from fourm_sam_instance.runner import SamRunner

    runner = SamRunner(tiny_sam, points_per_side=4, points_per_batch=5, pred_iou_thresh=-1e9,
                       stability_score_thresh=0.0, box_nms_thresh=0.7)
    assert runner.grid_points().shape == (16, 2)
    outs = runner(sample_photos(2))
    assert len(outs) == 2
    for out in outs:
        assert out["size"] == [256, 256] and out["instances"]
        masks = M.decode_instances(out)
        boxes = M.masks_to_boxes(masks)
        for inst, b, m in zip(out["instances"], boxes, masks):
            np.testing.assert_allclose(inst["box"], b / 256, atol=1e-6)
            assert inst["area"] == int(m.sum())
        areas = [i["area"] for i in out["instances"]]
        assert areas == sorted(areas, reverse=True)
        # NMS: no two kept boxes overlap more than the threshold
        from torchvision.ops import box_iou
        import torch

        iou = box_iou(torch.tensor(boxes), torch.tensor(boxes)).fill_diagonal_(0)
        assert float(iou.max()) <= 0.7 + 1e-6
    strict = SamRunner(tiny_sam, points_per_side=4, pred_iou_thresh=2.0)  # nothing passes a predicted IoU of 2
    assert strict(sample_photos(1)) == [{"size": [256, 256], "instances": []}]


def test_labeler_missing_weights_error():
    from fourm_core.plugin_kit.hub import WeightsNotAvailableError
    from fourm_sam_instance.components import SamInstanceLabeler

    with pytest.raises(WeightsNotAvailableError, match="huggingface-cli download facebook/sam-vit-base"):
        SamInstanceLabeler()


# -- mask tokenizer ---------------------------------------------------------------------------------
def test_mask_tokenizer_learns_real_masks(tmp_path):
    import torch

    from fourm_sam_instance.components import decode_points_masks, make_mask_tokenizer, train_mask_tokenizer

    raws = [photo_instances(p, max_instances=16) for p in sample_photos(3)]
    tok, losses = train_mask_tokenizer(raws, str(tmp_path / "tok"), steps=60, batch_size=16, lr=2e-3,
                                       tokenizer=make_mask_tokenizer(**TINY_MASK_TOK))
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    ser = SamInstanceSerializer(mask_tokenizer=str(tmp_path / "tok"), point_mode="grid", num_points=9)
    pts = ser.from_text(ser.to_text(raws[0]))
    decoded = decode_points_masks(pts, tok, size=(256, 256))
    assert decoded.dtype == bool and decoded.shape[1:] == (256, 256) and len(decoded) >= 1
    with torch.no_grad():
        assert tok.encode(torch.zeros(2, 1, 64, 64)).shape == (2, 16)


def test_visualizer_draws_both_forms():
    from fourm_sam_instance.components import visualize

    raw = photo_instances(sample_photos(1)[0])
    img = np.asarray(visualize(raw))
    assert img.shape == (256, 256, 3) and len(np.unique(img.reshape(-1, 3), axis=0)) >= len(raw["instances"])
    pts = {"points": [{"xy": [0.5, 0.5], "instances": [{"box": [0.1, 0.1, 0.6, 0.7], "tokens": [0] * 16}]},
                      {"xy": [0.9, 0.1], "instances": []}]}
    img2 = np.asarray(visualize(pts))
    assert img2.shape == (256, 256, 3) and img2.max() == 255


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path, tiny_sam):
    """`fourm label` (the data job) runs the tiny SAM (default automatic-mask settings) over an ingested store of
    real photos (spanning shards); each stored raw is that of the labeler run on the stored photo."""
    from fourm_core.data.store import Store
    from fourm_core.testing import label_photo_store
    from fourm_sam_instance.components import SamInstanceLabeler

    raws = label_photo_store(tmp_path, "sam_instance", tiny_sam)
    assert len(raws) == 3 and all(r["size"] == [256, 256] for r in raws)
    photos = Store.open(str(tmp_path / "store.zarr"), "r").read_raw("rgb", range(3))
    assert raws == SamInstanceLabeler(weights=tiny_sam)({"rgb": photos})


def test_random_points_depend_on_seed_and_sample_not_on_call_order():
    """Catches an RNG shared across calls: a resumed job (or another process) must write the same text for the
    same sample."""
    from fourm_registry import get_modalities

    spec = get_modalities()["sam_instance"]
    a, b = spec.serializer.build(point_mode="random"), spec.serializer.build(point_mode="random")
    one = {"size": [32, 32], "instances": []}
    two = {"size": [48, 48], "instances": []}
    assert a.to_text(one) == b.to_text(one)
    a.to_text(two)  # another sample in between changes nothing
    assert a.to_text(one) == b.to_text(one)
    assert a.query_points(one).tolist() != a.query_points(two).tolist()
    c = spec.serializer.build(point_mode="random", seed=5)
    assert c.query_points(one).tolist() != a.query_points(one).tolist()


def test_malformed_points_form_is_a_value_error():
    import pytest

    from fourm_registry import get_modalities

    ser = get_modalities()["sam_instance"].serializer.build()
    with pytest.raises(ValueError, match=r"query point 0: instance 0 must be \{'box'"):
        ser.to_text({"points": [{"xy": [0.5, 0.5], "instances": [{"box": [0, 0, 1, 1]}]}]})
