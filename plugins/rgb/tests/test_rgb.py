"""Tests of the rgb plugin: contract tests for ``rgb`` and ``tok_rgb`` plus transform properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_registry import get_modalities
from fourm_core.testing import ModalityPluginTests, sample_photos

TINY_VQ = dict(image_size=32, patch_size=8, dim=32, depth=1, num_heads=2, vocab_size=64, code_dim=8)


class TestRgb(ModalityPluginTests):
    modality = "rgb"

    def example_raw(self):
        return sample_photos(2)


class TestTokRgb(ModalityPluginTests):
    modality = "tok_rgb"

    def example_raw(self):
        return sample_photos(2)

    def tokenizer_kwargs(self):
        return dict(TINY_VQ)


def _transform():
    return get_modalities()["rgb"].transform.build()


def test_specs_layout():
    mods = get_modalities()
    rgb, tok = mods["rgb"], mods["tok_rgb"]
    assert rgb.kind == "pixels" and rgb.image_size == (224, 224) and not rgb.decoder
    assert tok.kind == "image" and tok.vocab_size == 16384 and tok.num_tokens == 196 and tok.source == "rgb"
    assert mods.resolve("rgb@224") == "rgb" and mods.resolve("tok_rgb@224") == "tok_rgb"


def test_tensor_round_trip_is_exact():
    t = _transform()
    photos = sample_photos(2)
    x = t.to_tensor(photos)
    assert x.shape == (2, 3, 256, 256) and x.dtype == torch.float32
    # ImageNet-normalised: the mean over real photos is near 0, not near 0.5
    assert abs(float(x.mean())) < 1.0
    back = t.from_tensor(x)
    for a, b in zip(photos, back):
        assert b.dtype == np.uint8 and np.array_equal(a, b)


def test_crop_identity_and_flip_mirror():
    t = _transform()
    img = sample_photos(1)[0]
    same = t.crop(img, box=(0, 0, 256, 256), flip=False, size=(256, 256))
    assert np.array_equal(same, img)
    flipped = t.crop(img, box=(0, 0, 256, 256), flip=True, size=(256, 256))
    assert np.array_equal(flipped, img[:, ::-1])


def test_crop_takes_the_box():
    t = _transform()
    img = np.zeros((256, 256, 3), np.uint8)
    img[:128, :128] = 255  # bright top-left quadrant
    out = t.crop(img, box=(0, 0, 128, 128), flip=False, size=(64, 64))
    assert out.shape == (64, 64, 3) and out.min() >= 250
    out = t.crop(img, box=(128, 128, 128, 128), flip=False, size=(64, 64))
    assert out.max() <= 5


def test_bad_input_names_the_modality():
    t = _transform()
    with pytest.raises(ValueError, match="'rgb'"):
        t.to_tensor([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="'rgb'"):
        t.crop(np.zeros((8, 8), np.uint8), box=(0, 0, 8, 8), flip=False, size=(4, 4))
