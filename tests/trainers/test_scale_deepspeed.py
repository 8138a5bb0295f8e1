"""DeepSpeed ZeRO-2 through Accelerate, on the CPU (one process under torchrun; DeepSpeed's CPU accelerator):
the trainer prepares the engine from the train config, trains, saves ``save_state`` checkpoints, resumes from
one exactly, and writes the final model. Skipped where deepspeed is not installed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trainer_helpers import base_config

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                 reason="deepspeed is not installed (pip install deepspeed)")]

SCRIPT = r'''
import json, sys
import torch
torch.set_num_threads(1)
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, set_seed
from fourm_trainers.config import TrainConfig
from fourm_trainers.train import build, trainer as T

cfg = TrainConfig.from_yaml(sys.argv[1])
stop_after = int(sys.argv[2]) or None
resume = sys.argv[3] == "resume"

def make_accelerator(c):
    # Accelerate turns DeepSpeed on only without cpu=True; with no GPU DeepSpeed runs on its CPU accelerator
    acc = Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))
    set_seed(c.seed)
    return acc, True, "no"

build.make_accelerator = make_accelerator
tr = T.Trainer(cfg).build()
if resume:
    tr.resume()
s = tr.fit(stop_after=stop_after)
ds = tr.acc.state.deepspeed_plugin.deepspeed_config
print("RESULT", json.dumps({"engine": type(tr.model).__name__, "step": s["step"], "stopped_by": s["stopped_by"],
                            "micro": ds["train_micro_batch_size_per_gpu"], "clip": ds["gradient_clipping"]}))
'''


def _launch(script: Path, cfg: Path, stop_after: int, mode: str) -> dict:
    from test_train import _free_port

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([torchrun, "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
                          str(_free_port()), str(script), str(cfg), str(stop_after), mode],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_deepspeed_zero2_trains_resumes_exactly_and_saves(tmp_path, stores):
    from fourm_core.model import FourM
    from fourm_trainers.train import metrics

    script = tmp_path / "ds_run.py"
    script.write_text(SCRIPT)
    runs = {}
    for name in ("full", "split"):
        cfg = base_config(tmp_path / name, stores, max_steps=4, batch_size=2, save_every=2, clip_grad=0.5)
        runs[name] = tmp_path / f"{name}.yaml"
        runs[name].write_text(yaml.safe_dump(cfg))
    full = _launch(script, runs["full"], 0, "fresh")
    assert full == {"engine": "DeepSpeedEngine", "step": 4, "stopped_by": None, "micro": 2, "clip": 0.5}
    first = _launch(script, runs["split"], 2, "fresh")
    assert first["step"] == 2 and first["stopped_by"] == "stop_after=2"
    assert (tmp_path / "split" / "checkpoints" / "latest").read_text().strip() == "step_2"
    second = _launch(script, runs["split"], 0, "resume")
    assert second["step"] == 4 and second["stopped_by"] is None
    a = metrics.read(tmp_path / "full" / "metrics.jsonl")
    b = metrics.read(tmp_path / "split" / "metrics.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    fa = FourM.from_pretrained(tmp_path / "full" / "final").state_dict()
    fb = FourM.from_pretrained(tmp_path / "split" / "final").state_dict()
    assert fa.keys() == fb.keys() and all(bool((fa[k] == fb[k]).all()) for k in fa)
