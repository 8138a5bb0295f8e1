"""imagebind / imagebind_global: contract tests plus labeler checks with a tiny OpenCLIP ViT (patch 14,
1 layer, the real 1280-d width so the outputs match the storage spec) saved to a file and loaded back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fourm_core.testing import ModalityPluginTests, sample_photos

WIDTH = 1280
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": WIDTH, "head_width": 640, "mlp_ratio": 0.25, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


_SAVED: dict[str, str] = {}


def save_tiny_vith(directory, name: str = "fourm-test-tiny-vith") -> str:
    """Save the tiny tower once per test session (building a 1280-wide layer takes seconds here)."""
    if name in _SAVED:
        return _SAVED[name]
    import open_clip
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / f"{name}.json"
    cfg.write_text(json.dumps(TINY))
    open_clip.add_model_config(str(cfg))
    torch.manual_seed(0)
    weights = directory / "open_clip_pytorch_model.bin"
    torch.save(open_clip.create_model(name).state_dict(), weights)
    _SAVED[name] = f"{name}:{weights}"
    return _SAVED[name]


def _photo_features(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((3, WIDTH)).astype(np.float32)
    return [((p[8::16, 8::16].astype(np.float32) / 255.0) @ proj).astype(np.float16) for p in sample_photos(2)]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_vith(tmp_path_factory.mktemp("vith"))


class TestImageBind(ModalityPluginTests):
    modality = "imagebind"

    def example_raw(self):
        return _photo_features()

    def make_labeler(self, tmp_path):
        from fourm_imagebind.components import ImageBindLabeler

        return ImageBindLabeler(weights=save_tiny_vith(tmp_path / "vith"), batch_size=2)

    def tokenizer_kwargs(self):
        return {"dim": 32, "depth": 1, "num_heads": 2, "codebook_size": 64}

    tokenizer_train_steps = 25

    def tokenizer_samples(self):
        """The features centred over the grid: the mean feature alone no longer reconstructs them, the
        tokens must carry each cell's direction."""
        return [(f.astype(np.float32) - f.astype(np.float32).mean(axis=(0, 1))).astype(np.float16)
                for f in self.example_raw()]


class TestImageBindGlobal(ModalityPluginTests):
    modality = "imagebind_global"

    def example_raw(self):
        return [f.astype(np.float32).mean(axis=(0, 1)).astype(np.float16) for f in _photo_features()]

    def make_labeler(self, tmp_path):
        from fourm_imagebind.components import ImageBindLabeler

        return ImageBindLabeler(weights=save_tiny_vith(tmp_path / "vith"), output="global", batch_size=2)

    def tokenizer_kwargs(self):
        return {"hidden_dim": 32, "depth": 1, "codebook_size": 64}

    tokenizer_train_steps = 25

    def tokenizer_samples(self):
        """Four distinct vectors (cells of the grid-centred feature map): reconstructing them beats their mean
        only when the tokens tell them apart."""
        f = _photo_features()[0].astype(np.float32)
        f = f - f.mean(axis=(0, 1))
        return [f[i, j].astype(np.float16) for i, j in ((2, 3), (7, 11), (12, 4), (9, 9))]


def test_patch_and_global_share_the_tower_and_match_it(tiny_weights):
    import open_clip
    import torch
    import torch.nn.functional as F

    from fourm_imagebind.components import ImageBindLabeler

    photos = sample_photos(2)
    patch_lab = ImageBindLabeler(weights=tiny_weights)
    glob_lab = ImageBindLabeler(weights=tiny_weights, output="global")
    assert patch_lab.extractor is glob_lab.extractor  # ViT-H is loaded once for both modalities
    patch, glob = patch_lab({"rgb": photos}), glob_lab({"rgb": photos})
    assert patch[0].shape == (16, 16, WIDTH) and glob[0].shape == (WIDTH,)

    name, path = tiny_weights.split(":", 1)
    ref = open_clip.create_model(name, pretrained=path).eval()
    ref.visual.output_tokens = True
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)) / torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        projected, tokens = ref.visual(x)
    np.testing.assert_allclose(patch[1].astype(np.float32), tokens[1].reshape(16, 16, WIDTH).numpy(), atol=3e-2, rtol=1e-2)
    projected_ours = ImageBindLabeler(weights=tiny_weights, output="global", project=True)({"rgb": photos})
    np.testing.assert_allclose(projected_ours[0].astype(np.float32), projected[0].numpy(), atol=3e-2, rtol=1e-2)


def test_default_weights_error_names_the_hub_repo():
    from fourm_core.plugin_kit.hub import WeightsNotAvailableError
    from fourm_imagebind.components import ImageBindLabeler

    with pytest.raises(WeightsNotAvailableError, match="laion/CLIP-ViT-H-14-laion2B-s32B-b79K"):
        ImageBindLabeler()


@pytest.mark.parametrize("modality", ["imagebind", "imagebind_global"])
def test_fourm_label_job_on_a_store_of_real_photos(tmp_path, tiny_weights, modality):
    """`fourm label` (the data job) runs the tiny ViT-H tower over an ingested store of real photos (spanning
    shards): every stored raw is the labeler's output for that stored photo."""
    from fourm_core.testing import label_photo_store
    from fourm_imagebind.components import ImageBindLabeler

    raws = label_photo_store(tmp_path, modality, tiny_weights)
    shape = (16, 16, WIDTH) if modality == "imagebind" else (WIDTH,)
    assert len(raws) == 3 and all(r.shape == shape for r in raws)
    output = "patch" if modality == "imagebind" else "global"
    direct = ImageBindLabeler(weights=tiny_weights, output=output)({"rgb": _stored_photos(tmp_path)})
    for stored, ref in zip(raws, direct):
        np.testing.assert_allclose(stored.astype(np.float32), ref.astype(np.float32), atol=3e-2, rtol=1e-2)
    assert not np.allclose(raws[0].astype(np.float32), raws[2].astype(np.float32), atol=1e-2)


def _stored_photos(tmp_path) -> list[np.ndarray]:
    """The rgb raws `fourm ingest` wrote into the store that :func:`label_photo_store` built under ``tmp_path``."""
    from fourm_core.data.store import Store

    return Store.open(str(tmp_path / "store.zarr"), "r").read_raw("rgb", range(3))
