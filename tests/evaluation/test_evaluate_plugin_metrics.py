"""``fourm_core.evaluate`` with the installed plugins' own ``metrics`` components (not the test-local ones the
other evaluation tests use): the depth plugin's aligned δ1 / AbsRel and the caption plugin's BLEU-4 / CIDEr-D.

The oracle (decode(encode(reference))) and the baseline are scored with the same plugin metric by hand here;
``evaluate`` must give the same figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from evaltest_fixtures import MODALITIES, NUM_SAMPLES, make_store, save_tiny_checkpoint


@pytest.fixture(scope="module")
def plugin_specs():
    from fourm_registry import ModalitySet, get_modalities

    mods = get_modalities()
    return ModalitySet([mods[n] for n in MODALITIES])


@pytest.fixture(scope="module")
def plugin_pipe(tmp_path_factory, plugin_specs):
    from fourm_core import AnyToAny

    root = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt_plugin_metrics"), plugin_specs)
    return AnyToAny.from_pretrained(root, modalities=plugin_specs)


def _by_hand(spec, predictions, references) -> dict[str, float]:
    metric = spec.metrics.build()
    metric.update(list(predictions), list(references))
    return metric.compute()


def test_evaluate_uses_the_plugins_metrics(plugin_pipe, plugin_specs, tmp_path):
    from fourm_core import evaluate
    from fourm_core.data import Store

    depth, caption = plugin_specs["depth"], plugin_specs["caption"]
    assert depth.metrics is not None and caption.metrics is not None, "the depth / caption plugins declare metrics"
    url = make_store(str(tmp_path / "eval.zarr"), plugin_specs)
    res = evaluate(plugin_pipe, url, inputs=["rgb"], targets=["depth", "caption"], out=tmp_path / "eval",
                   oracle=True, steps=2, batch_size=3, options={"max_new_tokens": 6}, progress=False)
    entry = res.metrics["targets"]["depth"]
    assert entry["primary"] == depth.metrics.build().primary == "delta1" and entry["higher_is_better"] is True
    assert entry["n"] == NUM_SAMPLES and {"delta1", "abs_rel", "rmse"} <= set(entry["model"])

    store = Store.open(url)
    refs = [plugin_pipe.square_resize(depth, r, (224, 224)) for r in store.read_raw("depth", range(NUM_SAMPLES))]
    codec = plugin_pipe.codec("depth")
    oracle = codec.decode(codec.encode(refs))
    expected = _by_hand(depth, oracle, refs)
    for name in ("delta1", "abs_rel", "rmse"):
        assert entry["oracle"][name] == pytest.approx(expected[name], rel=1e-4, abs=1e-6), name
    # a perfect prediction scores perfect with the same metric, so the oracle's figures are below that bound
    perfect = _by_hand(depth, refs, refs)
    assert perfect["delta1"] == pytest.approx(1.0) and entry["oracle"]["delta1"] <= 1.0

    cap = res.metrics["targets"]["caption"]
    assert cap["primary"] == caption.metrics.build().primary
    captions = store.read_raw("caption", range(NUM_SAMPLES))
    # captions survive the text tokenizer: the oracle is the references themselves
    assert cap["oracle"] == pytest.approx(_by_hand(caption, captions, captions))
    assert np.isfinite(cap["model"][cap["primary"]])
