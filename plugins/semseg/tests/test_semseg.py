"""Tests of the semseg plugin: contract tests with tiny Mask2Former weights, nearest resampling, legend."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from fourm_core.plugin_kit.hub import WeightsNotAvailableError
from fourm_core.testing import label_on_cpu_and_cuda, label_photo_store
from fourm_registry import get_modalities
from fourm_core.testing import ModalityPluginTests, check_raw, sample_photos
from fourm_semseg.components import COCO_PANOPTIC_CLASSES, SemsegLabeler, class_name, palette

TINY_VQ = dict(image_size=32, patch_size=8, dim=32, depth=1, num_heads=2, vocab_size=64, code_dim=8)
PERSON, SKY, GRASS = 0, COCO_PANOPTIC_CLASSES.index("sky-other-merged"), COCO_PANOPTIC_CLASSES.index("grass-merged")


def save_tiny_mask2former(path, labels=COCO_PANOPTIC_CLASSES) -> str:
    """A randomly initialised Mask2Former (tiny Swin backbone) + its image processor, saved to ``path``."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor
    from transformers import SwinConfig

    torch.manual_seed(0)
    swin = SwinConfig(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=swin, use_timm_backbone=False, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=32, dim_feedforward=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
        num_queries=8, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)})
    Mask2FormerForUniversalSegmentation(config).save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32,
                              num_labels=len(labels)).save_pretrained(path)
    return str(path)


def save_tiny_oneformer(path, labels=("person", "grass-merged", "sky-other-merged")) -> str:
    """A randomly initialised OneFormer + its processor (image processor and a tiny CLIP BPE tokenizer for the
    task prompt), saved to ``path``."""
    import json
    import string

    from transformers import CLIPTokenizer, OneFormerConfig, OneFormerForUniversalSegmentation
    from transformers import OneFormerImageProcessor, OneFormerProcessor, SwinConfig

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in list(string.ascii_lowercase) + [" ", "_", "-"]:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    metadata = {**{str(i): n for i, n in enumerate(labels)}, "thing_ids": [0]}
    image_processor = OneFormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, num_labels=len(labels),
                                              metadata=metadata, num_text=4)
    OneFormerProcessor(image_processor=image_processor, tokenizer=tokenizer, max_seq_length=8,
                       task_seq_length=8).save_pretrained(path)
    swin = SwinConfig(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = OneFormerConfig(
        backbone_config=swin, num_queries=8, conv_dim=32, mask_dim=32, hidden_dim=32, encoder_feedforward_dim=32,
        dim_feedforward=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2, task_seq_len=8,
        text_encoder_width=32, text_encoder_context_length=8, text_encoder_num_layers=1,
        text_encoder_vocab_size=len(vocab), text_encoder_n_ctx=2, query_dec_layers=1,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    OneFormerForUniversalSegmentation(config).save_pretrained(path)
    return str(path)


def scene_map() -> np.ndarray:
    """A person standing on grass under the sky, with an ignored band at the bottom."""
    m = np.full((256, 256, 1), SKY, np.uint8)
    m[150:] = GRASS
    m[60:200, 100:150] = PERSON
    m[240:] = 255
    return m


def diagonal_map() -> np.ndarray:
    yy, xx = np.mgrid[:256, :256]
    return np.where(xx > yy, 3, 120).astype(np.uint8)[..., None]


class TestSemseg(ModalityPluginTests):
    modality = "semseg"

    def example_raw(self):
        return [scene_map(), diagonal_map()]

    def make_labeler(self, tmp_path):
        return SemsegLabeler(weights=save_tiny_mask2former(tmp_path / "semseg"), batch_size=2)

    def tokenizer_kwargs(self):
        return dict(TINY_VQ)

    def reconstruction_error(self, tokenizer, x, y):
        """Class maps: the fraction of pixels whose decoded class id is wrong, against that of the best
        constant map (every pixel the most frequent class)."""
        t = get_modalities()["semseg"].transform.build()
        ids = torch.from_numpy(np.stack(t.from_tensor(y))[..., 0].astype(np.int64))
        truth = x[:, 0].round().long()
        counts = torch.bincount(truth.flatten())
        return float((ids != truth).float().mean()), float(1 - counts.max() / truth.numel())


def test_labeler_on_real_photos(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        labeler = SemsegLabeler(weights=save_tiny_mask2former(tmp_path / "w"), batch_size=2)
    assert "not COCO panoptic" not in caplog.text  # the tiny model carries COCO's labels
    out = labeler({"rgb": sample_photos(3)})
    assert len(out) == 3
    for m in out:
        check_raw(get_modalities()["semseg"], m)
        assert int(m.max()) < len(COCO_PANOPTIC_CLASSES)


def test_other_label_sets_warn_and_too_many_classes_raise(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        SemsegLabeler(weights=save_tiny_mask2former(tmp_path / "five", labels=[f"c{i}" for i in range(5)]))
    assert "not COCO panoptic" in caplog.text
    with pytest.raises(ValueError, match="uint8"):
        SemsegLabeler(weights=save_tiny_mask2former(tmp_path / "many", labels=[f"c{i}" for i in range(300)]))


def test_crop_resamples_nearest_and_flip_mirrors():
    t = get_modalities()["semseg"].transform.build()
    m = diagonal_map()
    for size in ((224, 224), (97, 61)):
        out = t.crop(m, box=(13, 7, 201, 190), flip=False, size=size)
        assert out.shape == (*size, 1) and set(np.unique(out)) <= {3, 120}  # no blended ids
    flipped = t.crop(m, box=(0, 0, 256, 256), flip=True, size=(256, 256))
    assert np.array_equal(flipped, m[:, ::-1])
    scene = t.crop(scene_map(), box=(0, 0, 256, 256), flip=False, size=(128, 128))
    assert set(np.unique(scene)) == {PERSON, SKY, GRASS, 255}


def test_tensor_conversion_ids_and_scores():
    t = get_modalities()["semseg"].transform.build()
    m = scene_map()
    x = t.to_tensor([m])
    assert x.shape == (1, 1, 256, 256) and x.dtype == torch.float32
    assert np.array_equal(t.from_tensor(x)[0], m)
    scores = torch.zeros(1, 133, 4, 4)
    scores[0, GRASS] = 1.0
    assert set(np.unique(t.from_tensor(scores)[0])) == {GRASS}


def test_visualizer_palette_and_legend():
    vis = get_modalities()["semseg"].visualizer.load()
    img = vis(scene_map())
    assert img.width > 256 and img.height == 256  # the legend panel sits right of the map
    arr = np.asarray(img)
    assert tuple(arr[100, 120]) == tuple(palette()[PERSON]) and tuple(arr[10, 10]) == tuple(palette()[SKY])
    assert tuple(arr[250, 10]) == (0, 0, 0)  # ignore is black
    assert len({tuple(c) for c in palette()[:133]}) > 120  # classes get distinct colours
    assert class_name(SKY) == "sky-other-merged" and class_name(255) == "ignore" and class_name(140) == "class 140"


def test_missing_weights_raise_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotAvailableError, match="semseg"):
        SemsegLabeler(weights=str(tmp_path / "nope"))


def test_oneformer_weights_are_supported(tmp_path):
    labeler = SemsegLabeler(weights=save_tiny_oneformer(tmp_path / "oneformer"), batch_size=2)
    assert labeler.is_oneformer
    out = labeler({"rgb": sample_photos(2)})
    for m in out:
        check_raw(get_modalities()["semseg"], m)
        assert int(m.max()) < 3


def test_semantic_maps_pruning_is_exact():
    import torch.nn.functional as F

    from fourm_semseg.components import semantic_maps

    g = torch.Generator().manual_seed(0)
    for q, k, h, w in ((8, 133, 16, 16), (5, 20, 1, 7), (12, 50, 9, 13)):
        cls = torch.randn(2, q, k + 1, generator=g) * 3
        masks = torch.randn(2, q, h, w, generator=g) * 4
        got = semantic_maps(cls, masks, None, [(64, 48), (37, 91)])
        probs, mprobs = cls.softmax(-1)[..., :-1], masks.sigmoid()
        for i, size in enumerate([(64, 48), (37, 91)]):
            scores = torch.einsum("qk,qhw->khw", probs[i], mprobs[i])
            full = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)
            assert torch.equal(got[i], full)


def test_semantic_maps_agree_with_the_processor(tmp_path):
    labeler = SemsegLabeler(weights=save_tiny_mask2former(tmp_path / "w"), batch_size=2)
    photos = sample_photos(2)
    enc = labeler.processor(images=photos, return_tensors="pt")
    with torch.inference_mode():
        outputs = labeler.model(**enc)
    reference = labeler.processor.post_process_semantic_segmentation(outputs, target_sizes=[(256, 256)] * 2)
    ours = labeler({"rgb": photos})
    for ref, m in zip(reference, ours):
        agree = (ref.numpy() == m[..., 0]).mean()
        assert agree > 0.9, f"only {agree:.1%} of pixels agree with Mask2FormerImageProcessor"


def test_fourm_label_job_on_a_store_of_real_photos(tmp_path):
    """`fourm label` (the data job) runs this labeler over an ingested store of real photos."""
    raws = label_photo_store(tmp_path, "semseg", save_tiny_mask2former(tmp_path / "w"))
    assert len(raws) == 3


@pytest.mark.requires("cuda", available=torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_labeler_matches_cpu(tmp_path):
    cpu, gpu = label_on_cpu_and_cuda(SemsegLabeler, save_tiny_mask2former(tmp_path / "w"))
    for a, b in zip(cpu, gpu):
        check_raw(get_modalities()["semseg"], b)
        assert (a == b).mean() > 0.99
