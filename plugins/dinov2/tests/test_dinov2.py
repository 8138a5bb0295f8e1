"""dinov2 / dinov2_global: contract tests plus feature-grid alignment, labeler and error checks.

The labeler runs a tiny randomly initialised ``Dinov2Model`` (1 layer, the real 768-d width so its output
matches the storage spec) saved with ``save_pretrained`` and loaded back through the real path.
"""

from __future__ import annotations

import numpy as np
import pytest

from fourm_core.testing import ModalityPluginTests, sample_photos

HIDDEN = 768


def _photo_features(dim: int, grid: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Feature maps with the spatial structure of real photos: each cell's pixels through a fixed projection."""
    rng = np.random.default_rng(seed)
    cell = 256 // grid
    proj = rng.standard_normal((cell * cell * 3, dim)).astype(np.float32) / cell
    out = []
    for photo in sample_photos(2):
        patches = photo.reshape(grid, cell, grid, cell, 3).transpose(0, 2, 1, 3, 4).reshape(grid, grid, -1)
        out.append(((patches.astype(np.float32) / 255.0 - 0.5) @ proj).astype(np.float16))
    return out


def _save_tiny_dinov2(path) -> str:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=1,
                          image_size=224, patch_size=14)
    Dinov2Model(config).save_pretrained(path)
    BitImageProcessor(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(path)
    return str(path)


class TestDinov2(ModalityPluginTests):
    modality = "dinov2"

    def example_raw(self):
        return _photo_features(HIDDEN)

    def make_labeler(self, tmp_path):
        from fourm_dinov2.components import Dinov2Labeler

        return Dinov2Labeler(weights=_save_tiny_dinov2(tmp_path / "dinov2"), batch_size=2)

    def tokenizer_kwargs(self):
        return {"dim": 32, "depth": 1, "num_heads": 2, "codebook_size": 64}

    tokenizer_train_steps = 25

    def tokenizer_samples(self):
        """The features centred over the grid: the mean feature alone no longer reconstructs them, the
        tokens must carry each cell's direction."""
        return [(f.astype(np.float32) - f.astype(np.float32).mean(axis=(0, 1))).astype(np.float16)
                for f in self.example_raw()]


class TestDinov2Global(ModalityPluginTests):
    modality = "dinov2_global"

    def example_raw(self):
        return [f.astype(np.float32).mean(axis=(0, 1)).astype(np.float16) for f in _photo_features(HIDDEN)]

    def make_labeler(self, tmp_path):
        from fourm_dinov2.components import Dinov2Labeler

        return Dinov2Labeler(weights=_save_tiny_dinov2(tmp_path / "dinov2"), output="global", batch_size=2)

    def tokenizer_kwargs(self):
        return {"hidden_dim": 32, "depth": 1, "codebook_size": 64}

    tokenizer_train_steps = 25

    def tokenizer_samples(self):
        """Four distinct vectors (cells of the grid-centred feature map): reconstructing them beats their mean
        only when the tokens tell them apart."""
        f = _photo_features(HIDDEN)[0].astype(np.float32)
        f = f - f.mean(axis=(0, 1))
        return [f[i, j].astype(np.float16) for i, j in ((2, 3), (7, 11), (12, 4), (9, 9))]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return _save_tiny_dinov2(tmp_path_factory.mktemp("dinov2"))


def test_labeler_patch_and_global_come_from_the_model(tiny_weights):
    """Patch cell (i, j) is token 1 + 16 i + j of the model run on the whole image resized to 224 (no crop),
    normalised with the processor's mean/std; the global vector is the layer-normed CLS token."""
    import torch
    import torch.nn.functional as F

    from fourm_dinov2.components import Dinov2Labeler

    photos = sample_photos(3)
    patch = Dinov2Labeler(weights=tiny_weights, batch_size=2)(({"rgb": photos}))
    glob = Dinov2Labeler(weights=tiny_weights, output="global", batch_size=2)({"rgb": photos})
    lab = Dinov2Labeler(weights=tiny_weights)
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(lab.mean).view(1, 3, 1, 1)) / torch.tensor(lab.std).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = lab.model(pixel_values=x).last_hidden_state.numpy()
    for k in range(3):
        assert patch[k].shape == (16, 16, HIDDEN) and patch[k].dtype == np.float16
        np.testing.assert_allclose(patch[k][3, 5].astype(np.float32), hidden[k, 1 + 3 * 16 + 5], atol=2e-2, rtol=1e-2)
        np.testing.assert_allclose(glob[k].astype(np.float32), hidden[k, 0], atol=2e-2, rtol=1e-2)
    # different photos give different features
    assert not np.allclose(patch[0].astype(np.float32), patch[1].astype(np.float32), atol=1e-2)
    # batching does not change the result
    single = Dinov2Labeler(weights=tiny_weights, batch_size=1)({"rgb": photos[:2]})
    np.testing.assert_allclose(single[1].astype(np.float32), patch[1].astype(np.float32), atol=1e-2)


def test_patch_and_global_labelers_share_one_model(tiny_weights):
    from fourm_dinov2.components import Dinov2Labeler

    assert Dinov2Labeler(weights=tiny_weights).model is Dinov2Labeler(weights=tiny_weights, output="global").model


def test_crop_maps_raw_pixels_onto_the_grid():
    """A box on cell boundaries (raw 256 px, 16 px cells) resampled to its own cell count is an exact slice;
    a flip mirrors it."""
    from fourm_dinov2.components import make_feature_transform

    feats = _photo_features(HIDDEN)[0]
    t = make_feature_transform()
    # rows 4..12, cols 2..12: the grid DINOv2 gives on that crop at 112 x 140 px
    assert t.grid_for((112, 140)) == (8, 10)
    out = t.crop(feats, box=(64, 32, 128, 160), flip=False, size=(8, 10))
    np.testing.assert_array_equal(out, feats[4:12, 2:12])
    flipped = t.crop(feats, box=(64, 32, 128, 160), flip=True, size=(8, 10))
    np.testing.assert_array_equal(flipped, feats[4:12, 2:12][:, ::-1])
    np.testing.assert_array_equal(t.crop(feats, box=(0, 0, 256, 256)), feats)
    np.testing.assert_array_equal(t.crop(feats, box=(0, 0, 256, 256), size=(16, 16)), feats)
    assert t.crop(feats, box=(0, 0, 256, 256), size=t.grid_for((448, 448))).shape == (32, 32, HIDDEN)
    with pytest.raises(ValueError, match="dinov2"):
        t.crop(np.zeros((16, 16, 3), np.float16), box=(0, 0, 256, 256))


def test_tensor_round_trip_and_global_transform():
    import torch

    from fourm_dinov2.components import make_feature_transform, make_global_transform

    feats = _photo_features(HIDDEN)
    t = make_feature_transform()
    x = t.to_tensor(feats)
    assert x.shape == (2, HIDDEN, 16, 16) and x.dtype == torch.float32
    back = t.from_tensor(x)
    np.testing.assert_array_equal(back[1], feats[1])
    g = make_global_transform()
    vec = feats[0].mean(axis=(0, 1)).astype(np.float16)
    np.testing.assert_array_equal(g.crop(vec, box=(10, 10, 100, 100), flip=True), vec)  # global: crop-invariant
    assert g.to_tensor([vec, vec]).shape == (2, HIDDEN)


def test_visualizer_separates_two_regions():
    from fourm_dinov2.components import visualize_features

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(HIDDEN), rng.standard_normal(HIDDEN)
    fmap = np.where(np.arange(16)[None, :, None] < 8, a, b) + 0.01 * rng.standard_normal((16, 16, HIDDEN))
    img = np.asarray(visualize_features(fmap.astype(np.float16)))
    left, right = img[:, : img.shape[1] // 4].reshape(-1, 3).mean(0), img[:, -img.shape[1] // 4 :].reshape(-1, 3).mean(0)
    assert np.abs(left - right).max() > 100


def test_missing_weights_give_an_actionable_error(tmp_path):
    from fourm_core.plugin_kit.hub import WeightsNotAvailableError
    from fourm_dinov2.components import Dinov2Labeler

    with pytest.raises(WeightsNotAvailableError, match="huggingface-cli download facebook/dinov2-base"):
        Dinov2Labeler()  # default weights, offline and not cached
    with pytest.raises(WeightsNotAvailableError, match="does not exist"):
        Dinov2Labeler(weights=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="output"):
        Dinov2Labeler(weights=str(tmp_path), output="cls")


def test_bad_input_names_the_modality(tiny_weights):
    from fourm_dinov2.components import Dinov2Labeler

    lab = Dinov2Labeler(weights=tiny_weights)
    with pytest.raises(ValueError, match="dinov2"):
        lab({"rgb": [np.zeros((256, 256, 3), np.float32)]})
    with pytest.raises(ValueError, match="rgb"):
        lab({"depth": []})


@pytest.mark.parametrize("modality", ["dinov2", "dinov2_global"])
def test_fourm_label_job_on_a_store_of_real_photos(tmp_path, tiny_weights, modality):
    """`fourm label` (the data job) runs the tiny DINOv2 over an ingested store of real photos (spanning shards):
    every stored raw is the model's output for that stored photo."""
    from fourm_core.testing import label_photo_store
    from fourm_dinov2.components import Dinov2Labeler

    raws = label_photo_store(tmp_path, modality, tiny_weights)
    shape = (16, 16, HIDDEN) if modality == "dinov2" else (HIDDEN,)
    assert len(raws) == 3 and all(r.shape == shape for r in raws)
    output = "patch" if modality == "dinov2" else "global"
    direct = Dinov2Labeler(weights=tiny_weights, output=output)({"rgb": _stored_photos(tmp_path)})
    for stored, ref in zip(raws, direct):
        np.testing.assert_allclose(stored.astype(np.float32), ref.astype(np.float32), atol=2e-2, rtol=1e-2)
    assert not np.allclose(raws[0].astype(np.float32), raws[2].astype(np.float32), atol=1e-2)


def _stored_photos(tmp_path) -> list[np.ndarray]:
    """The rgb raws `fourm ingest` wrote into the store that :func:`label_photo_store` built under ``tmp_path``."""
    from fourm_core.data.store import Store

    return Store.open(str(tmp_path / "store.zarr"), "r").read_raw("rgb", range(3))
