"""The trivial baselines of each kind and the best / median / worst ranking."""

from __future__ import annotations

import numpy as np

from fourm_registry import ModalitySpec, StorageSpec


def _spec(dtype, shape, fill=None):
    return ModalitySpec(name="m", kind="image", grid=(2, 2), vocab_size=8,
                        storage=StorageSpec(dtype=dtype, shape=shape, fill_value=fill))


def test_class_maps_predict_the_most_frequent_label_without_the_ignore_value():
    from fourm_core.evaluation.scoring import Baseline

    base = Baseline(_spec("uint8", (4, 4, 1), fill=255))
    a = np.full((4, 4, 1), 255, np.uint8)
    a[0] = 3
    b = np.full((4, 4, 1), 7, np.uint8)
    b[:, :3] = 3
    base.add([a, b])  # 255: 12 + 0 pixels (ignored), 3: 4 + 12, 7: 4
    value = base.value
    assert value.dtype == np.uint8 and value.shape == (4, 4, 1) and (value == 3).all()
    assert "most frequent value (3)" in base.description


def test_floats_and_colour_images_predict_the_mean():
    from fourm_core.evaluation.scoring import Baseline

    base = Baseline(_spec("float16", (2, 2, 1)))
    base.add([np.zeros((2, 2, 1), np.float16)])
    base.add([np.ones((2, 2, 1), np.float16) * 0.5])
    np.testing.assert_allclose(base.value, 0.25)
    rgb = Baseline(_spec("uint8", (2, 2, 3)))
    rgb.add([np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8), np.full((2, 2, 3), 10, np.uint8)])
    assert rgb.value.dtype == np.uint8 and (rgb.value == 88).all()  # (0 + 255 + 10) / 3 = 88.3


def test_json_values_predict_the_most_frequent_one():
    from fourm_core.evaluation.scoring import Baseline

    spec = ModalitySpec(name="det", kind="sequence", max_length=8, vocab_size=10, storage=StorageSpec(dtype="json"),
                        serializer="fourm_core.compat.serializer:PlainTextSerializer")
    base = Baseline(spec)
    base.add([{"boxes": [[0, 0, 1, 1]]}, "a cat", {"boxes": [[0, 0, 1, 1]]}])
    assert base.value == {"boxes": [[0, 0, 1, 1]]} and "2 times in 3" in base.description


def test_ranking_follows_the_direction_and_skips_nan():
    from fourm_core.evaluation.scoring import ranked

    s = np.array([0.3, np.nan, 0.1, 0.9, 0.5])
    assert ranked(s, higher_is_better=False) == {"best": 2, "median": 4, "worst": 3}
    assert ranked(s, higher_is_better=True) == {"best": 3, "median": 0, "worst": 2}
    assert ranked(np.array([np.nan]), True) == {}


def test_json_values_pick_the_best_constant_under_the_metric():
    from evaltest_metrics import MeanAbsoluteError

    from fourm_core.evaluation.scoring import Baseline

    spec = ModalitySpec(name="count", kind="sequence", max_length=8, vocab_size=10, storage=StorageSpec(dtype="json"),
                        serializer="fourm_core.compat.serializer:PlainTextSerializer")
    base = Baseline(spec, metric=MeanAbsoluteError)
    base.add([0, 10, 12, 11, 30])  # all distinct: total absolute error 63, 33, 33, 32, 87
    assert base.value == 11 and "scores best as a constant prediction, among the 5 most" in base.description
