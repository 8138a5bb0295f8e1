"""Tests of the depth plugin: contract tests with tiny Depth-Anything weights, normalisation, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_core.plugin_kit.hub import WeightsNotAvailableError
from fourm_core.testing import label_on_cpu_and_cuda, label_photo_store
from fourm_core.plugin_kit.images import resize_short_side_center_crop
from fourm_registry import get_modalities
from fourm_core.testing import ModalityPluginTests, check_raw, sample_photos
from fourm_depth.components import DepthLabeler, normalize_depth

TINY_VQ = dict(image_size=32, patch_size=8, dim=32, depth=1, num_heads=2, vocab_size=64, code_dim=8)


def save_tiny_depth_anything(path, *, metric: bool = False) -> str:
    """A randomly initialised Depth-Anything (DINOv2 backbone) + its DPT image processor, saved to ``path``."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                 head_hidden_size=8, reassemble_hidden_size=32,
                                 depth_estimation_type="metric" if metric else "relative")
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(path)
    return str(path)


def save_tiny_dpt(path) -> str:
    """A randomly initialised DPT (ViT backbone) + its image processor, saved to ``path``."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
                       patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16, head_in_index=-1)
    DPTForDepthEstimation(config).save_pretrained(path)
    DPTImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=False).save_pretrained(path)
    return str(path)


def motorcycle_depth() -> np.ndarray:
    """Real depth: the ground-truth disparity of scikit-image's stereo motorcycle, as stored by this plugin."""
    from skimage import data

    disp = data.stereo_motorcycle()[2].astype(np.float32)
    disp[~np.isfinite(disp)] = np.nanmin(np.where(np.isfinite(disp), disp, np.nan))
    disp = resize_short_side_center_crop(disp[..., None], 256)
    d = normalize_depth(torch.from_numpy(disp[None, ..., 0]), prediction="disparity")[0]
    return d.numpy().astype(np.float16)[..., None]


def ramp(h: int = 256, w: int = 256) -> np.ndarray:
    """A plane receding to the right (0 at the left edge, 1 at the right)."""
    return np.broadcast_to(np.linspace(0, 1, w, dtype=np.float32), (h, w)).astype(np.float16)[..., None].copy()


class TestDepth(ModalityPluginTests):
    modality = "depth"

    def example_raw(self):
        return [motorcycle_depth(), ramp()]

    def make_labeler(self, tmp_path):
        return DepthLabeler(weights=save_tiny_depth_anything(tmp_path / "depth"), batch_size=2)

    def tokenizer_kwargs(self):
        return dict(TINY_VQ)


def test_labeler_output_on_real_photos(tmp_path):
    labeler = DepthLabeler(weights=save_tiny_depth_anything(tmp_path / "w"), batch_size=2)
    assert labeler.prediction == "disparity"  # Depth-Anything "relative" predicts inverse depth
    photos = sample_photos(3)
    maps = labeler({"rgb": photos})
    assert len(maps) == 3
    spec = get_modalities()["depth"]
    for m in maps:
        check_raw(spec, m)
        assert float(m.min()) == 0.0 and float(m.max()) == 1.0  # the per-image range spans [0, 1]
    # batching does not change results: one image at a time gives the same maps
    single = DepthLabeler(weights=str(tmp_path / "w"), batch_size=1)({"rgb": photos})
    for a, b in zip(maps, single):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)


def test_dpt_weights_are_supported(tmp_path):
    labeler = DepthLabeler(weights=save_tiny_dpt(tmp_path / "dpt"))
    assert labeler.prediction == "disparity"
    out = labeler({"rgb": sample_photos(2)})
    for m in out:
        check_raw(get_modalities()["depth"], m)


def test_metric_models_are_not_reversed(tmp_path):
    labeler = DepthLabeler(weights=save_tiny_depth_anything(tmp_path / "metric", metric=True))
    assert labeler.prediction == "depth"


def test_normalize_depth_orders_near_to_far():
    disparity = torch.linspace(10, 1, 100).view(1, 1, 100).expand(1, 4, 100)  # left near, right far
    d = normalize_depth(disparity, prediction="disparity", percentiles=(0.0, 100.0))
    assert float(d[0, 0, 0]) == 0.0 and float(d[0, 0, -1]) == 1.0
    assert bool((d[0, 0, 1:] >= d[0, 0, :-1]).all())
    depth = torch.linspace(1, 10, 100).view(1, 1, 100)
    np.testing.assert_allclose(normalize_depth(depth, prediction="depth", percentiles=(0, 100)).numpy(),
                               d[:, :1].numpy(), atol=1e-6)
    flat = normalize_depth(torch.full((2, 8, 8), 3.0), prediction="disparity")
    assert bool((flat == 0).all())
    with pytest.raises(ValueError, match="depth"):
        normalize_depth(depth, prediction="inverse")


def test_missing_weights_raise_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotAvailableError, match="depth"):
        DepthLabeler(weights=str(tmp_path / "does-not-exist"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotAvailableError, match="huggingface-cli download"):
        DepthLabeler(weights=str(tmp_path / "empty"))


def test_bad_inputs_raise(tmp_path):
    labeler = DepthLabeler(weights=save_tiny_depth_anything(tmp_path / "w"))
    with pytest.raises(ValueError, match="'depth'"):
        labeler({"rgb": [np.zeros((32, 32), np.uint8)]})
    with pytest.raises(ValueError, match="'depth'"):
        labeler({"image": []})
    with pytest.raises(ValueError, match="'depth'"):
        DepthLabeler(weights=str(tmp_path / "w"), prediction="sideways")


def test_transform_flip_mirrors_and_crop_is_bilinear():
    t = get_modalities()["depth"].transform.build()
    d = ramp()
    flipped = t.crop(d, box=(0, 0, 256, 256), flip=True, size=(256, 256))
    assert np.array_equal(flipped, d[:, ::-1])
    half = t.crop(d, box=(0, 0, 256, 128), flip=False, size=(64, 64))  # left half of the ramp
    assert half.dtype == np.float16 and half.shape == (64, 64, 1)
    assert float(half.max()) < 0.51 and bool((np.diff(half[0, :, 0].astype(np.float32)) >= 0).all())
    x = t.to_tensor([d, motorcycle_depth()])
    assert x.shape == (2, 1, 256, 256) and x.dtype == torch.float32
    back = t.from_tensor(x)
    assert np.array_equal(back[0], d)


def test_visualizer_colours_near_warm_and_far_cold():
    vis = get_modalities()["depth"].visualizer.load()
    img = np.asarray(vis(ramp()))
    near, far = img[128, 2].astype(int), img[128, -3].astype(int)
    assert near[0] > near[2] and far[2] > far[0]


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path):
    """`fourm label` (the data job) runs this labeler over an ingested store of real photos."""
    raws = label_photo_store(tmp_path, "depth", save_tiny_depth_anything(tmp_path / "w"))
    assert len(raws) == 3


@pytest.mark.requires("cuda", available=torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_labeler_matches_cpu(tmp_path):
    cpu, gpu = label_on_cpu_and_cuda(DepthLabeler, save_tiny_depth_anything(tmp_path / "w"))
    for a, b in zip(cpu, gpu):
        check_raw(get_modalities()["depth"], b)
        assert np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() < 1e-2
