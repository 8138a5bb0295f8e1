"""Tests of the normal plugin: contract tests with tiny TIPSv2-DPT weights, depth-derived normals, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_core.plugin_kit.hub import WeightsNotAvailableError
from fourm_core.testing import label_photo_store
from fourm_core.plugin_kit.images import resize_short_side_center_crop
from fourm_registry import get_modalities
from fourm_core.testing import ModalityPluginTests, check_raw, sample_photos
from fourm_normal.components import (NormalFromDepthLabeler, NormalLabeler, decode_normals, encode_normals,
                                     normals_from_depth)

TINY_VQ = dict(image_size=32, patch_size=8, dim=32, depth=1, num_heads=2, vocab_size=64, code_dim=8)


def save_tiny_tipsv2_normal(path) -> str:
    """A randomly initialised TIPSv2-DPT normal estimator + its image processor, saved to ``path``."""
    from transformers import Tipsv2DptConfig, Tipsv2DptForNormalEstimation, Tipsv2DptImageProcessor
    from transformers import Tipsv2VisionConfig

    torch.manual_seed(0)
    backbone = Tipsv2VisionConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56,
                                  patch_size=14, out_indices=[1, 2, 3, 4], apply_layernorm=True,
                                  reshape_hidden_states=False)
    config = Tipsv2DptConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16)
    Tipsv2DptForNormalEstimation(config).save_pretrained(path)
    Tipsv2DptImageProcessor(size={"height": 56, "width": 56}).save_pretrained(path)
    return str(path)


def motorcycle_depth() -> np.ndarray:
    """Relative depth (0 = near) from the ground-truth disparity of scikit-image's stereo motorcycle."""
    from skimage import data

    disp = data.stereo_motorcycle()[2].astype(np.float32)
    disp[~np.isfinite(disp)] = float(np.nanmin(np.where(np.isfinite(disp), disp, np.nan)))
    disp = resize_short_side_center_crop(disp[..., None], 256)[..., 0]
    lo, hi = np.percentile(disp, [1, 99])
    return (1.0 - np.clip((disp - lo) / (hi - lo), 0, 1)).astype(np.float16)[..., None]


def floor_depth(h: int = 256, w: int = 256) -> np.ndarray:
    """A floor seen from above it: far at the top of the image, near at the bottom."""
    return np.broadcast_to(np.linspace(1, 0, h, dtype=np.float32)[:, None], (h, w)).astype(np.float16)[..., None]


class TestNormal(ModalityPluginTests):
    modality = "normal"
    crop_probe = "marker"  # unit vectors are renormalised: two normals with x = 0 (a flip leaves them alone)

    def marker_values(self):
        from fourm_normal.components import encode_normals

        return encode_normals(np.array([0.0, 0.0, 1.0])), encode_normals(np.array([0.0, 0.6, 0.8]))

    def example_raw(self):
        return [encode_normals(normals_from_depth(motorcycle_depth())), encode_normals(normals_from_depth(floor_depth()))]

    def make_labeler(self, tmp_path):
        return NormalLabeler(weights=save_tiny_tipsv2_normal(tmp_path / "normal"), batch_size=2)

    def tokenizer_kwargs(self):
        return dict(TINY_VQ)


def _norms(raw: np.ndarray) -> np.ndarray:
    return np.linalg.norm(raw.astype(np.float32) / 127.5 - 1.0, axis=-1)


def test_labeler_outputs_unit_normals(tmp_path):
    labeler = NormalLabeler(weights=save_tiny_tipsv2_normal(tmp_path / "w"), batch_size=2)
    out = labeler({"rgb": sample_photos(3)})
    assert len(out) == 3
    for raw in out:
        check_raw(get_modalities()["normal"], raw)
        norms = _norms(raw)
        assert norms.min() > 0.98 and norms.max() < 1.02  # unit vectors up to uint8 quantisation


def test_normals_from_depth_geometry():
    flat = normals_from_depth(np.full((64, 64), 0.5, np.float32))
    np.testing.assert_allclose(flat[8:-8, 8:-8], np.broadcast_to([0, 0, 1], (48, 48, 3)), atol=1e-5)
    receding_right = normals_from_depth(np.broadcast_to(np.linspace(0, 1, 64, dtype=np.float32), (64, 64)))
    centre = receding_right[32, 32]
    # like the left wall of a corridor: it faces right (+x) and towards the camera (+z)
    assert centre[0] > 0.1 and abs(centre[1]) < 1e-3 and centre[2] > 0
    floor = normals_from_depth(floor_depth(64, 64))
    assert floor[32, 32, 1] > 0.1 and floor[32, 32, 2] > 0  # a floor's normal points up
    for n in (flat, receding_right, floor):
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="'normal'"):
        normals_from_depth(np.zeros((4, 4)), fov_deg=200)


def test_normal_from_depth_labeler():
    labeler = NormalFromDepthLabeler()
    out = labeler({"rgb": sample_photos(1), "depth": [motorcycle_depth()]})
    check_raw(get_modalities()["normal"], out[0])
    assert _norms(out[0]).min() > 0.98
    with pytest.raises(ValueError, match="depth"):
        labeler({"rgb": sample_photos(1)})
    with pytest.raises(ValueError, match="weight-free"):
        NormalFromDepthLabeler(weights="x/y")


def test_flip_negates_x():
    t = get_modalities()["normal"].transform.build()
    raw = encode_normals(normals_from_depth(motorcycle_depth()))
    flipped = t.crop(raw, box=(0, 0, 256, 256), flip=True, size=(256, 256))
    mirrored = raw[:, ::-1].astype(int)
    expected = mirrored.copy()
    expected[..., 0] = 255 - mirrored[..., 0]
    assert np.abs(flipped.astype(int) - expected).max() <= 1  # re-normalisation may move a value by 1
    a = decode_normals(flipped)[100, 100]
    b = decode_normals(raw)[100, 255 - 100]
    np.testing.assert_allclose(a, [-b[0], b[1], b[2]], atol=0.02)


def test_crop_keeps_unit_length_and_tensor_range():
    t = get_modalities()["normal"].transform.build()
    raw = encode_normals(normals_from_depth(motorcycle_depth()))
    out = t.crop(raw, box=(10, 20, 150, 170), flip=False, size=(224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert _norms(out).min() > 0.98
    x = t.to_tensor([out, out])
    assert x.shape == (2, 3, 224, 224) and float(x.min()) >= -1 and float(x.max()) <= 1
    back = t.from_tensor(x)
    assert np.abs(back[0].astype(int) - out.astype(int)).max() <= 1


def test_missing_weights_raise_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotAvailableError, match="normal"):
        NormalLabeler(weights=str(tmp_path / "nope"))


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path):
    """`fourm label` (the data job) runs this labeler over an ingested store of real photos."""
    raws = label_photo_store(tmp_path, "normal", save_tiny_tipsv2_normal(tmp_path / "w"))
    assert len(raws) == 3
