"""``fourm_core.evaluate``: generation over a store, persisted parts, metrics, oracle, baseline, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaltest_fixtures import NUM_SAMPLES


def _mae(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def test_evaluate_scores_persisted_predictions(pipe, store_url, tmp_path):
    from fourm_core import evaluate
    from fourm_core.data import Store
    from fourm_core.evaluation.persist import part_path, read_part

    out = tmp_path / "eval"
    res = evaluate(pipe, store_url, inputs=["rgb"], targets=["depth", "caption"], out=out, oracle=True,
                   steps=2, batch_size=3, options={"max_new_tokens": 6}, progress=False)
    assert res.computed == {"model": 2, "oracle": 2}  # shards of 4: samples 0-3, 4-5
    store = Store.open(store_url)
    refs = [pipe.square_resize(pipe.modalities["depth"], r, (224, 224)) for r in store.read_raw("depth", range(6))]
    preds = read_part(part_path(out, "model", 0, 4))["depth"] + read_part(part_path(out, "model", 4, 6))["depth"]
    assert len(preds) == NUM_SAMPLES and preds[0].shape == (224, 224, 1)
    # the figures are the metric over the persisted predictions against the resized references
    expected = [_mae(p, r) for p, r in zip(preds, refs)]
    entry = res.metrics["targets"]["depth"]
    assert entry["n"] == NUM_SAMPLES and entry["primary"] == "mae" and entry["higher_is_better"] is False
    assert entry["model"]["mae"] == pytest.approx(np.mean(expected))
    np.testing.assert_allclose(res.scores["depth"]["model"], expected)
    # the oracle is decode(encode(reference)) through the depth tokenizer
    codec = pipe.codec("depth")
    tokens = codec.encode(refs)
    oracle = codec.decode(tokens)
    assert entry["oracle"]["mae"] == pytest.approx(np.mean([_mae(o, r) for o, r in zip(oracle, refs)]), rel=1e-5)
    # the baseline is the per-pixel mean depth of the references
    mean = np.mean(np.stack(refs).astype(np.float64), axis=0).astype(np.float16)
    assert entry["baseline"]["mae"] == pytest.approx(np.mean([_mae(mean, r) for r in refs]), rel=1e-4)
    assert "mean" in entry["baseline_is"]
    # best / median / worst are ranked by the per-sample primary score (lower mae is better)
    ranks = res.ranks["depth"]
    assert ranks["best"] == int(np.argmin(expected)) and ranks["worst"] == int(np.argmax(expected))
    # a caption: exact match, its baseline is the most frequent caption
    cap = res.metrics["targets"]["caption"]
    assert cap["primary"] == "accuracy" and cap["higher_is_better"] is True
    captions = store.read_raw("caption", range(6))
    assert cap["baseline"]["accuracy"] == pytest.approx(captions.count("a cat on a sofa") / 6)
    assert cap["oracle"]["accuracy"] == pytest.approx(1.0)  # a caption survives its text tokenizer
    # reports
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["targets"]["depth"]["model"]["mae"] == pytest.approx(entry["model"]["mae"])
    table = (out / "metrics.md").read_text()
    assert "| depth | **mae** ↓ |" in table and "oracle" in table
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(6)) and rows[2]["depth"]["model"] == pytest.approx(expected[2])
    from PIL import Image

    grid = Image.open(out / "grid_depth.png")
    assert grid.width == 192 * 4 and grid.height > 3 * 192  # input | prediction | truth | oracle, three rows
