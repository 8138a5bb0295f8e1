"""sam_edge: contract tests plus edge properties (a square's outline, crops keep thin edges, SAM fallback)."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_core.testing import ModalityPluginTests, sample_photos
from fourm_sam_instance import masks as M
from fourm_sam_instance.testing import photo_instances, save_tiny_sam


class TestSamEdge(ModalityPluginTests):
    modality = "sam_edge"
    crop_probe = "marker"  # binary maps: rectangles of 255 on 0

    def example_raw(self):
        from fourm_sam_edge.components import edges_from_instances

        return [edges_from_instances(photo_instances(p)) for p in sample_photos(2)]

    def labeler_inputs(self):
        photos = sample_photos(2)
        return {"rgb": photos, "sam_instance": [photo_instances(p) for p in photos]}

    def tokenizer_kwargs(self):
        # 32 px inputs as the other edge tokenizers' tests: a 224 px one trained for seconds barely beats a constant
        return {"image_size": 32, "patch_size": 8, "dim": 32, "depth": 1, "num_heads": 2, "codebook_size": 64}


def test_edges_of_two_squares_are_their_outlines():
    from fourm_sam_edge.components import SamEdgeLabeler

    masks = np.zeros((2, 64, 64), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 20:50, 35:60] = True
    raw = M.encode_instances(masks)
    edge = SamEdgeLabeler()({"rgb": [np.zeros((64, 64, 3), np.uint8)], "sam_instance": [raw]})[0]
    assert edge.shape == (64, 64, 1) and edge.dtype == np.uint8 and set(np.unique(edge)) == {0, 255}
    outline = np.zeros((64, 64), bool)
    outline[10:30, 10:30] = True
    outline[11:29, 11:29] = False
    outline2 = np.zeros((64, 64), bool)
    outline2[20:50, 35:60] = True
    outline2[21:49, 36:59] = False
    np.testing.assert_array_equal(edge[..., 0] == 255, outline | outline2)
    thick = SamEdgeLabeler(thickness=3)({"sam_instance": [raw]})[0]
    assert (thick > 0).sum() > (edge > 0).sum()


def test_crop_keeps_thin_edges_and_flips():
    from fourm_sam_edge.components import SamEdgeTransform, edges_from_instances

    edge = edges_from_instances(photo_instances(sample_photos(1)[0]))
    t = SamEdgeTransform()
    small = t.crop(edge, box=(0, 0, 256, 256), size=(128, 128))
    assert small.shape == (128, 128, 1) and set(np.unique(small)) <= {0, 255}
    # every edge pixel of the full map still has an edge within one pixel in the half-size map
    ys, xs = np.nonzero(edge[..., 0])
    near = np.zeros_like(small[..., 0], bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(small[..., 0] > 0, dy, 0), dx, 1)
    assert near[ys // 2, xs // 2].mean() > 0.98
    box = (16, 8, 200, 220)
    np.testing.assert_array_equal(t.crop(edge, box, flip=True), t.crop(edge, box)[:, ::-1])
    np.testing.assert_array_equal(t.crop(edge, box), edge[16:216, 8:228])
    x = t.to_tensor([edge, edge])
    assert x.shape == (2, 1, 256, 256) and float(x.max()) == 1.0
    np.testing.assert_array_equal(t.from_tensor(x)[0], edge)


def test_runs_sam_itself_without_stored_instances(tmp_path):
    from fourm_sam_edge.components import SamEdgeLabeler

    lab = SamEdgeLabeler(weights=save_tiny_sam(tmp_path / "sam"), points_per_side=4, pred_iou_thresh=-1e9,
                         stability_score_thresh=0.0)
    out = lab({"rgb": sample_photos(2)})
    assert len(out) == 2 and out[0].shape == (256, 256, 1) and out[0].dtype == np.uint8
    with pytest.raises(ValueError, match="sam_instance"):
        SamEdgeLabeler()({"depth": []})


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path):
    """`fourm label` on a store of real photos: sam_instance first (tiny SAM, permissive thresholds so that the
    random model keeps masks), then sam_edge from the stored instances; the edges are the outlines of the masks."""
    from fourm_core.data.jobs import ingest, label
    from fourm_core.data.store import Store
    from fourm_core.testing import label_photo_store
    from fourm_registry import get_modalities
    from fourm_core.testing import check_raw
    from fourm_sam_edge.components import edges_from_instances

    weights = save_tiny_sam(tmp_path / "sam")
    label_photo_store(tmp_path, "sam_instance", weights)
    url = str(tmp_path / "store.zarr")
    # without its requirement in the store, the job says what to run first
    bare = str(tmp_path / "bare.zarr")
    ingest(tmp_path / "photos", bare, samples_per_shard=2, progress=False)
    with pytest.raises(Exception, match=r"requires 'sam_instance'.*fourm label .* --modalities sam_instance"):
        label(bare, ["sam_edge"], progress=False)
    label(url, ["sam_instance"], weights={"sam_instance": weights}, overwrite=True, progress=False,
          labeler_kwargs={"sam_instance": {"points_per_side": 4, "pred_iou_thresh": -1e9,
                                           "stability_score_thresh": 0.0}})
    label(url, ["sam_edge"], progress=False)
    store = Store.open(url, "r")
    instances = store.read_raw("sam_instance", range(3))
    edges = store.read_raw("sam_edge", range(3))
    assert all(inst["instances"] for inst in instances)
    for inst, edge in zip(instances, edges):
        check_raw(get_modalities()["sam_edge"], edge)
        np.testing.assert_array_equal(edge, edges_from_instances(inst))
        assert edge.any()
