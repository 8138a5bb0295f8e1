"""``build_metric`` / ``metrics_for``: what the evaluation command calls."""

from __future__ import annotations

import pytest

from fourm_core.metrics import build_metric, metrics_for
from fourm_registry import Metric, UnknownModalityError, get_modalities


def test_build_metric_gives_a_fresh_accumulator_or_none():
    mods = get_modalities()
    assert build_metric(mods["rgb"]) is None
    a, b = build_metric(mods["depth"]), build_metric(mods["depth"])
    assert isinstance(a, Metric) and a is not b and a.modality == "depth"


def test_metrics_for_names_aliases_and_specs():
    mods = get_modalities()
    got = metrics_for(["rgb", "tok_semseg@224", mods["det"]])
    assert sorted(got) == ["det", "semseg"]
    assert got["semseg"].primary == "mIoU" and got["det"].higher_is_better
    with pytest.raises(UnknownModalityError, match="nope"):
        metrics_for(["nope"])
