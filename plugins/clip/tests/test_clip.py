"""clip: contract tests plus labeler, weights-string and error checks.

The labeler runs a tiny open_clip model: a JSON config added with ``open_clip.add_model_config`` (1-layer
ViT, 64 wide, the real 512-d projection so the output matches the storage spec) whose random weights are
saved to a file and loaded back through ``pretrained=<file>``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fourm_core.testing import ModalityPluginTests, sample_photos

EMBED = 512
TINY = {
    "embed_dim": EMBED,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "head_width": 32, "mlp_ratio": 1.0, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_tiny_clip(directory, name: str = "fourm-test-tiny-clip", config: dict | None = None) -> str:
    """Register a tiny open_clip config, save random weights, return the ``MODEL:FILE`` weights string."""
    import open_clip
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    cfg_path = directory / f"{name}.json"
    cfg_path.write_text(json.dumps(config or TINY))
    open_clip.add_model_config(str(cfg_path))
    torch.manual_seed(0)
    model = open_clip.create_model(name)
    weights = directory / "weights.pt"
    torch.save(model.state_dict(), weights)
    return f"{name}:{weights}"


def _photo_features(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((3, EMBED)).astype(np.float32)
    out = []
    for photo in sample_photos(2):
        small = photo[8:-8:16, 8:-8:16][:14, :14].astype(np.float32) / 255.0  # (14, 14, 3)
        out.append((small @ proj).astype(np.float16))
    return out


class TestClip(ModalityPluginTests):
    modality = "clip"

    def example_raw(self):
        return _photo_features()

    def make_labeler(self, tmp_path):
        from fourm_clip.components import ClipLabeler

        return ClipLabeler(weights=save_tiny_clip(tmp_path / "clip"), batch_size=2)

    def tokenizer_kwargs(self):
        return {"dim": 32, "depth": 1, "num_heads": 2, "codebook_size": 64}

    tokenizer_train_steps = 25

    def tokenizer_samples(self):
        """The features centred over the grid: the mean feature alone no longer reconstructs them, the
        tokens must carry each cell's direction."""
        return [(f.astype(np.float32) - f.astype(np.float32).mean(axis=(0, 1))).astype(np.float16)
                for f in self.example_raw()]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_labeler_outputs_projected_patch_tokens(tiny_weights):
    """Stored features = layer-normed patch tokens @ the tower's projection, on the whole image at 224 px."""
    import open_clip
    import torch
    import torch.nn.functional as F

    from fourm_clip.components import ClipLabeler

    photos = sample_photos(2)
    lab = ClipLabeler(weights=tiny_weights, batch_size=1)
    out = lab({"rgb": photos})
    assert [o.shape for o in out] == [(14, 14, EMBED)] * 2 and out[0].dtype == np.float16

    name, path = tiny_weights.split(":", 1)
    ref = open_clip.create_model(name, pretrained=path).eval()
    ref.visual.output_tokens = True
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pooled, tokens = ref.visual((x - mean) / std)
        expected = (tokens @ ref.visual.proj).reshape(2, 14, 14, EMBED).numpy()
    np.testing.assert_allclose(out[1].astype(np.float32), expected[1], atol=3e-2, rtol=1e-2)
    unprojected = ClipLabeler(weights=tiny_weights, project=False)({"rgb": photos[:1]})[0]
    assert unprojected.shape == (14, 14, 64)


def test_weights_strings_and_errors(tiny_weights, tmp_path):
    from fourm_clip.components import ClipLabeler
    from fourm_clip.openclip import parse_weights
    from fourm_core.plugin_kit.hub import WeightsNotAvailableError

    assert parse_weights("ViT-B-16:openai", "clip") == ("ViT-B-16", "openai")
    assert parse_weights("ViT-B-16:/a/b:c.pt", "clip") == ("ViT-B-16", "/a/b:c.pt")
    assert parse_weights("hf-hub:org/name", "clip") == ("hf-hub:org/name", None)
    with pytest.raises(ValueError, match="MODEL:PRETRAINED"):
        parse_weights("ViT-B-16", "clip")
    with pytest.raises(ValueError, match="unknown open_clip model 'NoSuchNet'"):
        ClipLabeler(weights="NoSuchNet:openai")
    with pytest.raises(WeightsNotAvailableError, match="does not exist"):
        ClipLabeler(weights=f"ViT-B-16:{tmp_path}/missing.pt")
    with pytest.raises(WeightsNotAvailableError, match="huggingface-cli download timm/vit_base_patch16_clip_224.openai"):
        ClipLabeler()  # default ViT-B-16:openai, offline and not cached
    with pytest.raises(ValueError, match="either"):
        ClipLabeler(weights=tiny_weights, model_name="ViT-B-16")


def test_crop_follows_the_raw_box(tiny_weights):
    """14 × 14 cells over 256 px: a box of whole cells resampled to its cell count is an exact slice."""
    from fourm_clip.components import make_feature_transform

    feats = _photo_features()[0]
    t = make_feature_transform(raw_size=224)  # 16 px cells
    np.testing.assert_array_equal(t.crop(feats, box=(32, 48, 96, 64), size=(6, 4)), feats[2:8, 3:7])
    np.testing.assert_array_equal(t.crop(feats, box=(32, 48, 96, 64), flip=True, size=(6, 4)), feats[2:8, 3:7][:, ::-1])
    assert t.grid_for((224, 224)) == (14, 14)


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path, tiny_weights):
    """`fourm label` (the data job) runs the tiny CLIP over an ingested store of real photos (spanning shards):
    every stored feature grid is the labeler's output for that stored photo."""
    from fourm_clip.components import ClipLabeler
    from fourm_core.testing import label_photo_store

    raws = label_photo_store(tmp_path, "clip", tiny_weights)
    assert len(raws) == 3 and all(r.shape == (14, 14, EMBED) for r in raws)
    direct = ClipLabeler(weights=tiny_weights)({"rgb": _stored_photos(tmp_path)})
    for stored, ref in zip(raws, direct):
        np.testing.assert_allclose(stored.astype(np.float32), ref.astype(np.float32), atol=3e-2, rtol=1e-2)
    assert not np.allclose(raws[0].astype(np.float32), raws[2].astype(np.float32), atol=1e-2)


def _stored_photos(tmp_path) -> list[np.ndarray]:
    """The rgb raws `fourm ingest` wrote into the store that :func:`label_photo_store` built under ``tmp_path``."""
    from fourm_core.data.store import Store

    return Store.open(str(tmp_path / "store.zarr"), "r").read_raw("rgb", range(3))
