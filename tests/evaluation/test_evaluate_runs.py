"""``fourm evaluate`` and the run mechanics: resuming an interrupted run, processes splitting the chunks,
refusing the parts of another run, and the errors a user can fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from evaltest_fixtures import eval_modalities, make_store

FAST = dict(steps=2, batch_size=2, progress=False, grids=False)


@pytest.fixture(scope="module")
def cli():
    import click

    from fourm_registry.cli import FourmGroup

    from fourm_core.cli_evaluate import register_commands

    @click.group(cls=FourmGroup)
    def group():
        """test group"""

    register_commands(group)
    return group


def test_cli_evaluate_reports_resumes_and_refuses_another_run(cli, checkpoint, store_url, specs, tmp_path,
                                                              monkeypatch):
    from fourm_registry.manager import get_manager

    # the command loads the model over the installed plugins: give their specs the test metrics
    monkeypatch.setattr(get_manager(), "modalities", lambda: specs)
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(checkpoint), "--data", store_url, "--inputs", "rgb", "--targets", "depth",
            "--samples", "5", "--out", str(out), "--oracle", "--batch-size", "4", "--no-progress", "--steps"]
    args, other_args = [*args, "2"], [*args, "3"]
    missing = CliRunner().invoke(cli, ["evaluate", "--model", str(checkpoint), "--data", str(tmp_path / "no.zarr"),
                                       "--inputs", "rgb", "--targets", "depth"])
    assert missing.exit_code == 2 and "Invalid value for --data" in missing.output and "fourm ingest" in missing.output
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "| depth | **mae** ↓ |" in res.output and "chunks computed: {'model': 2, 'oracle': 2}" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["targets"]["depth"]
    assert entry["n"] == 5 and set(entry) >= {"model", "oracle", "baseline", "grid"}
    assert (out / "grid_depth.png").is_file() and metrics["generation"]["steps"] == 2
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "none (all resumed)" in again.output, again.output
    assert json.loads((out / "metrics.json").read_text())["targets"]["depth"]["model"] == entry["model"]
    other = CliRunner().invoke(cli, other_args)
    assert other.exit_code != 0 and "holds model predictions of another run" in other.output
    assert "--overwrite" in other.output
    redo = CliRunner().invoke(cli, [*other_args, "--overwrite"])
    assert redo.exit_code == 0 and "{'model': 2, 'oracle': 2}" in redo.output, redo.output


def test_interrupted_run_resumes_without_recomputing(pipe, store_url, tmp_path, monkeypatch):
    from fourm_core import evaluate
    from fourm_core.evaluation import runner

    fresh = evaluate(pipe, store_url, inputs="rgb", targets="depth", out=tmp_path / "fresh", **FAST)
    real, calls = runner.write_part, []

    def dies_after_one(path, raws):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(path)
        real(path, raws)

    monkeypatch.setattr(runner, "write_part", dies_after_one)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        evaluate(pipe, store_url, inputs="rgb", targets="depth", out=out, **FAST)
    monkeypatch.setattr(runner, "write_part", real)
    res = evaluate(pipe, store_url, inputs="rgb", targets="depth", out=out, **FAST)
    assert res.computed["model"] == 1  # only the chunk that was not written
    assert res.metrics["targets"]["depth"]["model"] == fresh.metrics["targets"]["depth"]["model"]
    np.testing.assert_array_equal(res.scores["depth"]["model"], fresh.scores["depth"]["model"])
    assert len(res.samples) == 6 and sorted(res.samples.tolist()) == list(range(6))
    with_oracle = evaluate(pipe, store_url, inputs="rgb", targets="depth", out=out, oracle=True, **FAST)
    assert with_oracle.computed == {"model": 0, "oracle": 2}  # adding --oracle computes only the round trips
    (out / "run.json").unlink()  # parts nobody can vouch for are not reused
    from fourm_core.evaluation import EvaluationError

    with pytest.raises(EvaluationError, match="holds predictions but no run.json"):
        evaluate(pipe, store_url, inputs="rgb", targets="depth", out=out, **FAST)


class _ThreadDist:
    """Process ``rank`` of two, as a thread: the barrier is a real one between the two threads."""

    def __init__(self, rank, world, barrier):
        self.rank, self.world, self.is_main, self._barrier = rank, world, rank == 0, barrier

    def barrier(self):
        self._barrier.wait(timeout=120)


def test_processes_split_the_chunks(pipe, specs, tmp_path, monkeypatch):
    import threading

    from fourm_core import evaluate
    from fourm_core.evaluation import runner

    url = make_store(str(tmp_path / "s.zarr"), specs, n=6, samples_per_shard=2, with_caption=False)
    single = evaluate(pipe, url, inputs="rgb", targets="depth", out=tmp_path / "one", **FAST)
    out, barrier, results = tmp_path / "two", threading.Barrier(2), {}
    monkeypatch.setattr(runner, "Dist", lambda device: _ThreadDist(int(threading.current_thread().name), 2, barrier))

    def rank(r):
        try:
            results[r] = evaluate(pipe, url, inputs="rgb", targets="depth", out=out, **FAST)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[r] = exc
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,), name=str(r)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results[1] is None, results[1]  # only process 0 reports
    res = results[0]
    assert not isinstance(res, BaseException), res
    assert res.computed["model"] == 2  # chunks 0 and 2; chunk 1 is process 1's
    assert len(list((out / "parts" / "model").iterdir())) == 3
    np.testing.assert_array_equal(res.scores["depth"]["model"], single.scores["depth"]["model"])


def test_errors_name_the_modality_and_the_fix(checkpoint, store_url, specs, tmp_path):
    from fourm_core import AnyToAny, evaluate
    from fourm_core.evaluation import EvaluationError

    bare = AnyToAny.from_pretrained(checkpoint, modalities=eval_modalities(metrics={}))
    with pytest.raises(EvaluationError, match=r"'depth' has no metrics: plugin fourm-depth declares no `metrics`"):
        evaluate(bare, store_url, inputs="rgb", targets="depth", **FAST)
    pipe = AnyToAny.from_pretrained(checkpoint, modalities=specs)
    no_caption = make_store(str(tmp_path / "nocap.zarr"), specs, with_caption=False)
    with pytest.raises(EvaluationError, match=r"no 'caption' values \(target caption\).*fourm label"):
        evaluate(pipe, no_caption, inputs="rgb", targets="caption", **FAST)
    with pytest.raises(EvaluationError, match="has 6 samples"):
        evaluate(pipe, store_url, inputs="rgb", targets="depth", samples=7, **FAST)
    with pytest.raises(EvaluationError, match="both inputs and targets"):
        evaluate(pipe, store_url, inputs="rgb,depth", targets="depth", **FAST)
    with pytest.raises(EvaluationError, match="no targets given"):
        evaluate(pipe, store_url, inputs="rgb", targets=" , ", **FAST)
