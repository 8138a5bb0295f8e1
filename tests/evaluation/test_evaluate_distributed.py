"""``evaluate`` under ``torchrun`` with two CPU processes: each computes its chunks, process 0 reports, and
the figures equal those of a single process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaltest_fixtures import make_store

HERE = Path(__file__).resolve().parent

SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
from evaltest_fixtures import eval_modalities
from fourm_core import evaluate
res = evaluate({ckpt!r}, {store!r}, inputs="rgb", targets="depth", out={out!r}, modalities=eval_modalities(),
               steps=2, batch_size=2, progress=False, grids=False)
if res is not None:
    print("RESULT " + json.dumps([res.computed["model"], res.metrics["targets"]["depth"]["model"]]))
"""


@pytest.mark.slow
def test_two_processes_match_one(checkpoint, specs, tmp_path, subprocess_env):
    from fourm_core import evaluate

    url = make_store(str(tmp_path / "s.zarr"), specs, n=6, samples_per_shard=2, with_caption=False)
    single = evaluate(str(checkpoint), url, inputs="rgb", targets="depth", out=tmp_path / "one", modalities=specs,
                      steps=2, batch_size=2, progress=False, grids=False)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=str(HERE), ckpt=str(checkpoint), store=url, out=str(tmp_path / "two")))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)],
                          capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1  # only process 0 reports
    computed, figures = json.loads(lines[0][len("RESULT "):])
    assert computed == 2  # chunks 0 and 2 of three; process 1 did chunk 1
    assert figures == pytest.approx(single.metrics["targets"]["depth"]["model"])
    parts = sorted(p.name for p in (tmp_path / "two" / "parts" / "model").iterdir())
    assert parts == ["000000000-000000002.npz", "000000002-000000004.npz", "000000004-000000006.npz"]
