"""Tests of the canny_edge plugin: contract tests on real photos plus the geometry of the edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_registry import get_modalities
from fourm_core.testing import ModalityPluginTests, check_raw, sample_photos
from fourm_canny_edge.components import CannyLabeler

TINY_VQ = dict(image_size=32, patch_size=8, dim=32, depth=1, num_heads=2, vocab_size=64, code_dim=8)
TOP, LEFT, SIDE = 64, 80, 100  # the synthetic square


def square_image() -> np.ndarray:
    img = np.full((256, 256, 3), 30, np.uint8)
    img[TOP : TOP + SIDE, LEFT : LEFT + SIDE] = 220
    return img


class TestCannyEdge(ModalityPluginTests):
    modality = "canny_edge"
    crop_probe = "marker"  # binary maps: rectangles of 255 on 0

    def reconstruction_error(self, tokenizer, x, y):
        """The soft-edge decoder predicts edge *strength*, trained against thickened, blurred edges: judge it
        against that target (MSE), relative to the target's variance (its best constant prediction)."""
        target = tokenizer.decoder.soft_target(x)
        return float(((y - target) ** 2).mean()), float(((target - target.mean()) ** 2).mean())

    def example_raw(self):
        return CannyLabeler()({"rgb": sample_photos(2)})

    def tokenizer_kwargs(self):
        return dict(TINY_VQ)


def test_square_gives_its_outline():
    edges = CannyLabeler()({"rgb": [square_image()]})[0][..., 0]
    assert set(np.unique(edges)) == {0, 255}
    ys, xs = np.nonzero(edges)
    # every edge pixel lies within 2 px of the square's border ...
    dist_y = np.minimum(np.abs(ys - TOP), np.abs(ys - (TOP + SIDE - 1)))
    dist_x = np.minimum(np.abs(xs - LEFT), np.abs(xs - (LEFT + SIDE - 1)))
    inside_band = (ys >= TOP - 2) & (ys <= TOP + SIDE + 1) & (xs >= LEFT - 2) & (xs <= LEFT + SIDE + 1)
    assert bool((inside_band & ((dist_y <= 2) | (dist_x <= 2))).all())
    # ... and the outline is closed: each side has an edge within 1 px at (nearly) every position
    band = lambda a, i: a[max(i - 1, 0) : i + 2]  # noqa: E731
    for side in (band(edges, TOP), band(edges, TOP + SIDE - 1)):
        assert (side[:, LEFT + 3 : LEFT + SIDE - 3].max(axis=0) == 255).mean() > 0.95
    for side in (band(edges.T, LEFT), band(edges.T, LEFT + SIDE - 1)):
        assert (side[:, TOP + 3 : TOP + SIDE - 3].max(axis=0) == 255).mean() > 0.95
    assert edges[TOP + 20 : TOP + SIDE - 20, LEFT + 20 : LEFT + SIDE - 20].max() == 0  # flat interior


def test_thresholds_are_configurable_and_validated():
    photos = sample_photos(2)
    auto = CannyLabeler()
    low = CannyLabeler(low_threshold=20, high_threshold=40)({"rgb": photos})
    high = CannyLabeler(low_threshold=100, high_threshold=200)({"rgb": photos})
    for lo, hi in zip(low, high):
        check_raw(get_modalities()["canny_edge"], lo)
        assert (lo > 0).sum() > (hi > 0).sum() > 0
    gray = np.full((8, 8), 100, np.uint8)
    assert auto.thresholds(gray) == pytest.approx((67.0, 133.0))
    with pytest.raises(ValueError, match="canny_edge"):
        CannyLabeler(low_threshold=10)
    with pytest.raises(ValueError, match="weight-free"):
        CannyLabeler(weights="org/model")
    with pytest.raises(ValueError, match="canny_edge"):
        auto({"rgb": [np.zeros((8, 8, 3), np.float32)]})


def test_crop_keeps_thin_edges_and_flip_mirrors():
    t = get_modalities()["canny_edge"].transform.build()
    edges = CannyLabeler()({"rgb": [square_image()]})[0]
    small = t.crop(edges, box=(0, 0, 256, 256), flip=False, size=(224, 224))[..., 0]
    assert set(np.unique(small)) <= {0, 255}
    s = 224 / 256
    rows = range(int((TOP + 5) * s), int((TOP + SIDE - 5) * s))
    left_col, right_col = int(LEFT * s), int((LEFT + SIDE - 1) * s)
    # the square's vertical sides survive down-scaling in every row
    assert all(small[r, left_col - 2 : left_col + 3].max() == 255 for r in rows)
    assert all(small[r, right_col - 2 : right_col + 3].max() == 255 for r in rows)
    flipped = t.crop(edges, box=(0, 0, 256, 256), flip=True, size=(256, 256))
    assert np.array_equal(flipped, edges[:, ::-1])


def test_tensor_round_trip():
    t = get_modalities()["canny_edge"].transform.build()
    edges = CannyLabeler()({"rgb": sample_photos(2)})
    x = t.to_tensor(edges)
    assert x.shape == (2, 1, 256, 256) and x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    for a, b in zip(edges, t.from_tensor(x)):
        assert np.array_equal(a, b)


def test_visualizer_is_grey():
    vis = get_modalities()["canny_edge"].visualizer.load()
    arr = np.asarray(vis(CannyLabeler()({"rgb": [square_image()]})[0]))
    assert arr.shape == (256, 256, 3) and np.array_equal(arr[..., 0], arr[..., 1]) and arr[TOP - 1 : TOP + 2, LEFT + 50, 0].max() == 255


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path):
    """`fourm label` (the data job) runs this labeler over an ingested store of real photos."""
    from PIL import Image

    from fourm_core.data.jobs import ingest, label
    from fourm_core.data.store import Store

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(sample_photos(3)):
        Image.fromarray(photo).save(folder / f"photo{i}.png")
    url = str(tmp_path / "store.zarr")
    ingest(folder, url, samples_per_shard=2, progress=False)
    label(url, ["canny_edge"], progress=False)
    raws = Store.open(url, "r").read_raw("canny_edge", range(3))
    spec = get_modalities()["canny_edge"]
    assert len(raws) == 3
    for raw in raws:
        check_raw(spec, raw)


def test_soft_edge_decoder_targets_decode_and_reload(tmp_path):
    """The default edge tokenizer: sigmoid edge strength, BCE against thickened + blurred edges; reloads."""
    from fourm_core.tokenizers import load_tokenizer

    from fourm_canny_edge.components import SOFT_EDGE_DECODER, make_tokenizer

    tok = make_tokenizer(spec=get_modalities()["canny_edge"], **TINY_VQ)
    assert tok.config["decoder"]["type"] == SOFT_EDGE_DECODER
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 16, 4:28] = 1.0  # a one-pixel line
    soft = tok.decoder.soft_target(x)
    assert soft.shape == x.shape and float(soft.min()) >= 0.0 and float(soft.max()) <= 1.0
    assert float(soft[0, 0, 16, 16]) > 0.8  # the line stays strong ...
    assert float(soft[0, 0, 14, 16]) > 0.2 and float(soft[0, 0, 5, 16]) == pytest.approx(0.0, abs=1e-6)  # ... widens
    torch.manual_seed(0)
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss, _ = tok.loss(x)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first
    ids = tok.encode(x)
    out = tok.decode(ids)
    assert out.shape == (1, 1, 32, 32) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    tok.save_pretrained(tmp_path / "edge_tok")
    again = load_tokenizer(tmp_path / "edge_tok")
    assert torch.allclose(again.decode(ids), out)


def test_from_tensor_reads_class_probabilities():
    t = get_modalities()["canny_edge"].transform.build()
    p = torch.zeros(1, 2, 4, 4)
    p[:, 0] = 1.0
    p[0, :, 1, 2] = torch.tensor([0.2, 0.8])
    edges = t.from_tensor(p)[0][..., 0]
    assert edges[1, 2] == 255 and edges.sum() == 255
    with pytest.raises(ValueError, match="canny_edge"):
        t.from_tensor(torch.zeros(1, 3, 4, 4))
