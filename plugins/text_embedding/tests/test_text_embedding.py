"""Tests of the text_embedding plugin: the contract kit plus the T5 encoder labeler with tiny weights."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_core.testing import ModalityPluginTests, sample_photos

from fourm_text_embedding.components import TextEmbeddingLabeler, TextEmbeddingTransform, valid_length, visualize
from fourm_text_embedding.testing import save_tiny_t5

CAPTIONS = ["an astronaut in a white suit with a flag", "a cat sleeping on a red sofa"]


class TestTextEmbedding(ModalityPluginTests):
    modality = "text_embedding"

    def example_raw(self):
        rng = np.random.default_rng(0)
        raws = []
        for n in (5, 77):
            a = np.zeros((77, 4096), np.float16)
            a[:n] = rng.standard_normal((n, 4096)).astype(np.float16)
            raws.append(a)
        return raws

    def labeler_inputs(self):
        return {"rgb": sample_photos(2), "caption": list(CAPTIONS)}

    def make_labeler(self, tmp_path):
        return TextEmbeddingLabeler(weights=save_tiny_t5(tmp_path / "t5"), batch_size=1)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    return save_tiny_t5(tmp_path_factory.mktemp("t5"))


def test_embeddings_are_zero_padded_per_caption_length(tiny_t5):
    lab = TextEmbeddingLabeler(weights=tiny_t5, batch_size=2)
    caps = ["a cat", "a cat sitting on the sofa", "", " ".join(["cat"] * 200)]
    out = lab({"rgb": sample_photos(4), "caption": caps})
    assert [o.dtype for o in out] == [np.float16] * 4 and all(o.shape == (77, 4096) for o in out)
    # T5 tokenisation: one token per word + </s>; truncated to 77
    assert [valid_length(o) for o in out] == [3, 7, 1, 77]
    assert np.isfinite(np.stack(out).astype(np.float32)).all()
    # the same words give the same states (batching does not change the result), different captions differ
    again = lab.embed(["a cat"])[0]
    assert np.allclose(again.astype(np.float32), out[0].astype(np.float32), atol=1e-2)
    assert not np.allclose(out[0][:2], out[1][:2])


def test_requires_caption_and_checks_dimension(tmp_path, tiny_t5):
    lab = TextEmbeddingLabeler(weights=tiny_t5)
    with pytest.raises(ValueError, match="requires the 'caption'"):
        lab({"rgb": sample_photos(1)})
    small = save_tiny_t5(tmp_path / "small", d_model=64)
    with pytest.raises(ValueError, match="hidden size 64.*4096"):
        TextEmbeddingLabeler(weights=small)
    with pytest.raises(Exception, match="not available locally"):
        TextEmbeddingLabeler(weights="nobody/no-such-t5")


def test_transform_tensor_round_trip_and_heat_map():
    raws = TestTextEmbedding().example_raw()
    t = TextEmbeddingTransform()
    x = t.to_tensor(raws)
    assert tuple(x.shape) == (2, 77, 4096)
    back = t.from_tensor(x)
    assert all(np.array_equal(a, b) for a, b in zip(raws, back))
    img = visualize(raws[0])
    assert img.mode == "RGB" and img.size == (256, 5 * 4)
