"""Tests of the caption plugin: the contract kit plus the BLIP labeler with tiny weights."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_core.testing import ModalityPluginTests, sample_photos

from fourm_caption.components import CaptionLabeler, CaptionSerializer, CaptionTransform, visualize
from fourm_caption.testing import WORDS, save_tiny_blip


class TestCaption(ModalityPluginTests):
    modality = "caption"
    crop_invariant = True  # a caption describes the whole image

    def assert_serialized_close(self, raw, back):
        assert back == " ".join(raw.split()), f"caption: {raw!r} came back as {back!r} (only whitespace may change)"

    def assert_decoded_equal(self, expected, got):
        assert got == expected.lower(), f"caption: decode(encode()) gave {got!r} for {expected!r} (uncased vocabulary)"

    def example_raw(self):
        return ["An astronaut in a white suit poses with a flag.", "a cat  sleeping\non a sofa", ""]

    def make_labeler(self, tmp_path):
        return CaptionLabeler(weights=save_tiny_blip(tmp_path / "blip"), max_new_tokens=8, num_beams=1, batch_size=1)


def test_labeler_generates_words_of_its_vocabulary(tmp_path):
    lab = CaptionLabeler(weights=save_tiny_blip(tmp_path / "blip"), max_new_tokens=10, num_beams=2, batch_size=2)
    caps = lab({"rgb": sample_photos(3)})
    assert len(caps) == 3
    for c in caps:
        assert isinstance(c, str) and c and set(c.split()) <= set(WORDS)
        assert len(c.split()) <= 10


def test_prompted_captions_start_with_the_prompt(tmp_path):
    lab = CaptionLabeler(weights=save_tiny_blip(tmp_path / "blip"), max_new_tokens=4, num_beams=1, prompt="a photo of")
    for c in lab({"rgb": sample_photos(2)}):
        assert c.startswith("a photo of")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_serializer_is_whitespace_normalising_identity(text):
    ser = CaptionSerializer()
    out = ser.to_text(text)
    assert out == " ".join(text.split())
    assert ser.from_text(out) == out and ser.to_text(ser.from_text(out)) == out


def test_bad_inputs_name_the_modality():
    with pytest.raises(ValueError, match="'caption'"):
        CaptionSerializer().to_text({"text": "x"})
    with pytest.raises(Exception, match="not available locally"):
        CaptionLabeler(weights="nobody/no-such-blip")


def test_transform_and_visualizer():
    assert CaptionTransform().crop(" a  b ", box=(0, 0, 1, 1), flip=True) == "a b"
    img = visualize("word " * 40)
    assert img.mode == "RGB" and img.height > 40
