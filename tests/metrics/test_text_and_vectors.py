"""Captions (BLEU / CIDEr-D against pycocoevalcap and by hand), embeddings (cosine, recall@k), edges, palettes
and metadata on tiny inputs whose figures are known."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from fourm_canny_edge.metrics import edge_f1
from fourm_color_palette.metrics import PaletteMetric
from fourm_core.metrics.base import MetricError
from fourm_core.metrics.captions import CaptionMetric, tokenize
from fourm_core.metrics.edges import EdgeMetric
from fourm_core.metrics.retrieval import EmbeddingMetric, retrieval_ranks
from fourm_metadata.metrics import MetadataMetric

HYPS = ["A man riding a horse on the beach.", "two dogs play in the snow", "a red bus",
        "a plate of food with broccoli", "people walking down a city street at night"]
REFS = [["A man rides a brown horse along the beach.", "a person on a horse near the ocean"],
        "Two dogs playing in snow.", ["a red double decker bus on a street"], "A plate with broccoli and rice.",
        ["a busy street at night with people walking", "city street at night"]]


def test_bleu_by_hand():
    m = CaptionMetric()
    # hypothesis "a cat on a mat" (5 words), reference "a cat is on a mat" (6): clipped matches 1-grams 5/5,
    # 2-grams "a cat", "on a", "a mat" 3/4, 3-grams "on a mat" 1/3, 4-grams 0/2 -> BLEU-4 ~ 0;
    # brevity penalty exp(1 - 6/5)
    [b4] = m.update(["A cat on a mat!"], ["a cat is on a mat"])
    f = m.compute()
    bp = math.exp(1 - 6 / 5)
    assert f["BLEU-1"] == pytest.approx(bp * 1.0, rel=1e-6)
    assert f["BLEU-2"] == pytest.approx(bp * math.sqrt(3 / 4), rel=1e-6)
    assert f["BLEU-3"] == pytest.approx(bp * (3 / 4 * 1 / 3) ** (1 / 3), rel=1e-6)
    assert b4 < 1e-3 and f["BLEU-4"] == pytest.approx(b4)
    m.reset()
    assert m.update(["the cat sat on the mat"], ["The cat sat on the mat."]) == [pytest.approx(1.0)]


def test_bleu_and_cider_match_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    m = CaptionMetric()
    scores = m.update(HYPS[:2], REFS[:2]) + m.update(HYPS[2:], REFS[2:])
    f = m.compute()
    gts = {i: [" ".join(tokenize(r)) for r in ([x] if isinstance(x, str) else x)] for i, x in enumerate(REFS)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(HYPS)}
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, per_sample = Bleu(4).compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    assert [f[f"BLEU-{k}"] for k in range(1, 5)] == pytest.approx(bleu, rel=1e-9)
    assert scores == pytest.approx(per_sample[3], rel=1e-9)
    assert f["CIDEr"] == pytest.approx(cider, rel=1e-9) and 0.5 < cider < 5


def test_caption_inputs():
    m = CaptionMetric()
    assert math.isnan(m.update(["a cat"], [""])[0])  # an empty reference is invalid: left out
    assert math.isnan(m.compute()["CIDEr"])
    with pytest.raises(MetricError, match="'caption' metrics, sample 0: the prediction must be one caption str"):
        m.update([["a", "b"]], ["a b"])
    with pytest.raises(MetricError, match="must be a caption str"):
        m.update([3], ["a b"])


def test_recall_at_k_and_cosine():
    keys = np.eye(4)
    queries = keys.copy()
    queries[1], queries[2] = 0.9 * keys[2] + 0.4 * keys[1], 0.9 * keys[1] + 0.4 * keys[2]  # own key second
    assert retrieval_ranks(queries, keys).tolist() == [0, 1, 1, 0]
    assert retrieval_ranks(keys[[0, 0]], keys[[0, 0]]).tolist() == [1, 1]  # a tie counts against
    m = EmbeddingMetric(ks=(1, 2))
    m.update(list(queries[:2]), list(keys[:2]))
    m.update(list(queries[2:]), list(keys[2:]))
    f = m.compute()
    assert (f["R@1"], f["R@2"], f["median_rank"]) == (0.5, 1.0, 1.5)
    assert f["cosine"] == pytest.approx((2 + 2 * 0.4 / math.sqrt(0.97)) / 4)


def test_feature_maps_pool_and_score_patches():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 4, 8)).astype(np.float16)
    m = EmbeddingMetric()
    assert m.update([ref, -ref], [ref, ref]) == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert m.compute()["patch_cosine"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(MetricError, match="all zeros"):
        m.update([ref], [np.zeros_like(ref)])
    with pytest.raises(MetricError, match="not embeddings of one kind"):
        m.update([ref[0, 0]], [ref])


def test_edge_metric_averages_images_and_agrees_with_edge_f1():
    t = np.zeros((20, 40, 1), np.uint8)
    t[:, 5] = 255
    p = np.zeros_like(t)
    p[:10, 5] = p[:10, 30] = 255
    m = EdgeMetric(tolerance=2)
    scores = m.update([p, t], [t, t])
    f = m.compute()
    # precision 10/20, recall 12/20 (rows 0..11 have a prediction within 2 px)
    assert f["precision"] == pytest.approx((0.5 + 1) / 2) and f["recall"] == pytest.approx((0.6 + 1) / 2)
    assert scores == [pytest.approx(edge_f1(p, t)), 1.0]
    assert f["F1"] == pytest.approx((2 * 0.5 * 0.6 / 1.1 + 1) / 2)


def test_palette_metric():
    a = {"colors": [[0, 0, 0], [255, 0, 0]]}
    b = {"colors": [[0, 0, 0], [255, 0, 0], [255, 0, 0], [0, 0, 30]]}
    m = PaletteMetric()
    # a -> b: 0, 0; b -> a: 0, 0, 0, 30 -> 1/2 (0 + 7.5)
    assert m.update([a, a], [b, a]) == [pytest.approx(3.75), 0.0]
    assert m.compute() == {"distance": pytest.approx(3.75 / 2), "count_error": pytest.approx(1.0)}
    with pytest.raises(MetricError, match="no colours"):
        m.update([a], [{"colors": []}])


def test_metadata_metric():
    ref = {"brightness": 100.0, "n_humans": 2, "aesthetic_score": 5.2}
    pred = {"brightness": 101.0, "n_humans": 3, "entropy": 4.0}  # brightness bin 19 = 19; n_humans wrong
    m = MetadataMetric()
    assert m.update([pred, ref], [ref, ref]) == [pytest.approx(1 / 3), 1.0]
    f = m.compute()
    assert f["bin_accuracy"] == pytest.approx(2 / 3) and f["missing"] == pytest.approx(1 / 6)
    assert f["abs_error/brightness"] == pytest.approx(0.5) and f["abs_error/n_humans"] == pytest.approx(0.5)
    assert f["norm_abs_error"] == pytest.approx(np.mean([0.5 / 255, 0.5 / 999, 0.0]))
    with pytest.raises(MetricError, match="unknown key"):
        m.update([{"bogus": 1}], [ref])
