"""fourm_core.plugin_kit.labelers / coco: the boilerplate shared by the model-based labelers of the plugins."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from fourm_core.plugin_kit.coco import COCO_PANOPTIC_CLASSES, COCO_THING_CLASSES
from fourm_core.plugin_kit.hub import WeightsNotAvailableError
from fourm_core.plugin_kit.labelers import (
    COMPUTE_DTYPES,
    ModelCache,
    batches,
    check_batch_size,
    check_rgb_image,
    compute_dtype,
    label_rgb_batches,
    load_model,
    load_processor_and_model,
    map_batches,
    require_rgb,
)


def test_check_batch_size_names_the_modality():
    assert check_batch_size(3, "depth") == 3
    with pytest.raises(ValueError, match=r"labeler of modality 'depth': batch_size must be >= 1, got 0"):
        check_batch_size(0, "depth")


def test_compute_dtype():
    assert [compute_dtype(d, "normal") for d in COMPUTE_DTYPES] == [torch.float32, torch.float16, torch.bfloat16]
    with pytest.raises(ValueError, match=r"labeler of modality 'normal': dtype must be one of .*'float64'"):
        compute_dtype("float64", "normal")


def test_batches_and_map_batches_keep_order_and_sizes():
    items = list(range(7))
    assert [list(b) for b in batches(items, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches([], 3)) == []
    seen: list[int] = []

    def double(chunk):
        seen.append(len(chunk))
        return np.asarray(chunk) * 2  # an array of per-item results, as the feature labelers return

    out = map_batches(double, items, 3)
    assert [int(v) for v in out] == [0, 2, 4, 6, 8, 10, 12] and seen == [3, 3, 1]


def test_label_rgb_batches_checks_the_images():
    imgs = [np.zeros((4, 5, 3), np.uint8) for _ in range(5)]
    assert label_rgb_batches(lambda chunk: [c.shape for c in chunk], {"rgb": imgs}, "depth", 2) == [(4, 5, 3)] * 5
    with pytest.raises(ValueError, match="labeler of modality 'depth': rgb sample 1"):
        label_rgb_batches(lambda chunk: chunk, {"rgb": [imgs[0], imgs[1].astype(np.float32)]}, "depth", 2)


def test_rgb_input_checks_name_the_modality():
    img = np.zeros((4, 4, 3), np.uint8)
    assert require_rgb({"rgb": [img]}, "dinov2")[0] is img
    with pytest.raises(ValueError, match=r"labeler for 'dinov2' needs inputs\['rgb'\]"):
        require_rgb({"depth": [img]}, "dinov2")
    assert check_rgb_image(img, "caption") is img
    with pytest.raises(ValueError, match=r"modality 'det': detector input must be uint8 \(H, W, 3\), got float32"):
        check_rgb_image(img.astype(np.float32), "det", "detector input")
    with pytest.raises(ValueError, match=r"modality 'caption': labeler input must be uint8"):
        check_rgb_image(img[..., :1], "caption")


def test_load_model_moves_casts_and_switches_to_eval():
    calls = []

    def loader(weights, **kwargs):
        calls.append((weights, kwargs))
        return torch.nn.Linear(2, 2).train()

    model = load_model(loader, "org/tiny", modality="depth", device="cpu", dtype=torch.float16, revision="x")
    assert not model.training and model.weight.dtype == torch.float16
    assert calls == [("org/tiny", {"revision": "x"})]
    model = load_model(loader, "org/tiny", modality="depth", device="cpu")
    assert model.weight.dtype == torch.float32 and not model.training


def test_load_processor_and_model_reports_missing_weights_with_the_modality(tmp_path):
    def never(weights, **kwargs):
        raise AssertionError("a missing local directory must not reach the loader")

    with pytest.raises(WeightsNotAvailableError, match="modality 'semseg'"):
        load_processor_and_model(never, never, str(tmp_path / "missing"), modality="semseg", device="cpu")
    processor, model = load_processor_and_model(lambda w: f"processor of {w}", lambda w: torch.nn.Linear(1, 1),
                                                "org/tiny", modality="semseg", device="cpu")
    assert processor == "processor of org/tiny" and not model.training


def test_model_cache_loads_once_across_threads():
    cache: ModelCache[object] = ModelCache()
    made = []
    start = threading.Barrier(4)

    def factory():
        made.append(1)
        return object()

    results = []

    def worker():
        start.wait()
        results.append(cache.get(("w", "cpu"), factory))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(r is results[0] for r in results)
    assert cache.get(("w", "cuda"), factory) is not results[0] and len(made) == 2
    cache.clear()
    cache.get(("w", "cpu"), factory)
    assert len(made) == 3


def test_coco_class_lists():
    assert len(COCO_THING_CLASSES) == 80 and len(set(COCO_THING_CLASSES)) == 80
    assert len(COCO_PANOPTIC_CLASSES) == 133 and len(set(COCO_PANOPTIC_CLASSES)) == 133
    assert COCO_PANOPTIC_CLASSES[:80] == COCO_THING_CLASSES
    assert COCO_THING_CLASSES[0] == "person" and COCO_PANOPTIC_CLASSES[-1] == "rug-merged"


def test_feature_modality_components():
    from fourm_core.plugin_kit.features import FeatureMapTransform, FeatureModalityComponents, VectorTransform

    kit = FeatureModalityComponents(modality="feat", global_modality="feat_global", channels=6, grid=(4, 4),
                                    patch_size=14)
    t = kit.make_feature_transform(raw_size=128)
    assert isinstance(t, FeatureMapTransform) and (t.grid, t.channels, t.raw_size) == ((4, 4), 6, 128)
    g = kit.make_global_transform()
    assert isinstance(g, VectorTransform) and g.modality == "feat_global"
    with pytest.raises(ValueError, match="modality 'feat'"):
        t.to_tensor([np.zeros((4, 4, 5), np.float16)])
    assert kit.visualize_features(np.random.default_rng(0).normal(size=(4, 4, 6))).mode == "RGB"
    assert kit.visualize_global(np.arange(6, dtype=np.float16)).mode == "RGB"
    from fourm_registry import ModalitySpec, StorageSpec

    spec = ModalitySpec(name="feat_global", kind="vector", vocab_size=16, num_tokens=4,
                        storage=StorageSpec(dtype="float16", shape=(6,)))
    tok = kit.make_global_tokenizer(spec=spec, hidden_dim=8, depth=1)
    assert tok is not None and (tok.num_tokens, tok.vocab_size) == (4, 16)
    lone = FeatureModalityComponents(modality="maponly", channels=6, grid=(4, 4), patch_size=14)
    with pytest.raises(ValueError, match="modality 'maponly' has no global"):
        lone.make_global_transform()
