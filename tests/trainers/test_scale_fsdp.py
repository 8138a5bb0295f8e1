"""Sharded training on the CPU: FSDP2 (``fully_shard``) across 2 gloo processes, and the final save gathering
the shards (``checkpointing.save_final``), checked against the same steps run unsharded.

Accelerate enables its FSDP mode on GPUs only, so here the model is sharded with torch's ``fully_shard``
directly (as Accelerate's FSDP2 does) and the Accelerator is the plain multi-CPU one; the Accelerate FSDP2 /
DeepSpeed launch itself runs in ``bench/gpu_check.sh`` on a GPU machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trainer_helpers import base_config

SCRIPT = r'''
import json, sys, copy
import torch
torch.set_num_threads(1)
from accelerate import Accelerator
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from fourm_core.model import FourM
from fourm_trainers.config import TrainConfig
from fourm_trainers.train import build, checkpointing, distributed

cfg = TrainConfig.from_yaml(sys.argv[1])
out = sys.argv[2]
acc = Accelerator(cpu=True)
rank, world = acc.process_index, acc.num_processes
modalities = build.discover_modalities([d.path for d in cfg.datasets], cfg.modalities)
sizes, text = build.vocab_sizes(cfg, modalities)
torch.manual_seed(0)
model = build.build_or_load_model(cfg, modalities, sizes)
reference = copy.deepcopy(model)
mesh = init_device_mesh("cpu", (world,))
for blk in list(model.encoder) + list(model.decoder):
    fully_shard(blk, mesh=mesh)
fully_shard(model, mesh=mesh)
registered = distributed.register_forward_methods(model)
masker = build.make_masker(cfg, cfg.datasets, modalities, text)
dataset, sampler = build.train_data(cfg, modalities, world=1, rank=0)   # the same batches on every rank
batches = []
for i, item in enumerate(build.make_loader(dataset, sampler, cfg.batch_size, 0)):
    if i == 2:
        break
    batches.append(masker(item["tensors"], present=item["present"], generator=torch.Generator().manual_seed(i)))

def run(m):
    opt = build.make_optimizer(m, cfg, cpu=True)
    norms = []
    for md in batches:
        o = m(md, num_encoder_tokens=masker.num_encoder_tokens, num_decoder_tokens=masker.num_decoder_tokens)
        o.loss.backward()
        norms.append(distributed.scalar(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)))
        opt.step(); opt.zero_grad()
    return norms

sharded_norms = run(model)
local = sum(p.to_local().numel() for p in model.parameters())
full = sum(p.numel() for p in model.parameters())
checkpointing.save_final(acc, model, __import__("pathlib").Path(out) / "final", None)
rec = {"rank": rank, "world": world, "registered": registered, "decoder": len(model.decoder), "sharded": distributed.is_sharded(model), "local": local, "full": full,
       "norms": sharded_norms}
if rank == 0:
    rec["ref_norms"] = run(reference)
    saved = FourM.from_pretrained(out + "/final")
    ref = reference.state_dict()
    got = saved.state_dict()
    rec["same_keys"] = sorted(ref) == sorted(got)
    rec["max_diff"] = max(float((ref[k] - got[k]).abs().max()) for k in ref)
    rec["moved"] = max(float((ref[k] - v).abs().max()) for k, v in FourM.from_pretrained(out + "/init").state_dict().items())
(__import__("pathlib").Path(out) / f"rank{rank}.json").write_text(json.dumps(rec))
'''


@pytest.mark.slow  # two torchrun processes, about a minute on 2 shared cores
def test_fsdp2_two_gloo_processes_train_and_save_gathered_weights(tmp_path, stores):
    """Two steps of the debug model sharded over 2 processes: each holds about half the parameters, the
    gradient norms equal the unsharded run's, and ``final/`` holds the full weights (every key, equal to the
    unsharded model's after the same steps, which moved away from the initial ones)."""
    from fourm_trainers.config import TrainConfig
    from fourm_trainers.train import build

    cfg = base_config(tmp_path / "run", stores, batch_size=2)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    out.mkdir()
    # the initial weights (seed 0), to check that the saved ones moved
    import torch

    tc = TrainConfig.from_dict(cfg)
    mods = build.discover_modalities([d.path for d in tc.datasets], None)
    torch.manual_seed(0)
    build.build_or_load_model(tc, mods, build.vocab_sizes(tc, mods)[0]).save_pretrained(str(out / "init"))
    script = tmp_path / "fsdp_run.py"
    script.write_text(SCRIPT)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    from test_train import _free_port

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                          str(_free_port()), str(script), str(p), str(out)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["sharded"] and r1["sharded"]
    assert r0["registered"] == r0["decoder"] > 0  # every decoder block's context_kv gathers its weights
    assert r0["local"] + r1["local"] == r0["full"] and 0.3 < r0["local"] / r0["full"] < 0.7
    assert r0["norms"] == r1["norms"] and r0["norms"] == pytest.approx(r0["ref_norms"], rel=1e-4)
    # Adam's first steps move a weight by about lr (2e-3) whatever its gradient's size, so float differences of
    # near-zero gradients (summed in another order by the reduce-scatter) show up at a small fraction of lr
    assert r0["same_keys"] and r0["moved"] > 1e-3 and r0["max_diff"] < 0.1 * 2e-3


CONFIGS = Path(__file__).resolve().parents[2] / "trainers" / "fourm_trainers" / "configs"


def test_shipped_accelerate_configs_and_the_mixture_recipe():
    """The Accelerate configs parse with Accelerate's own loader and wrap classes that exist; the 4M-21 recipe
    declares three datasets with their own modalities and a text-only one with its own alphas."""
    from accelerate.commands.config.config_args import ClusterConfig

    from fourm_core.model import blocks
    from fourm_trainers.config import TrainConfig

    fsdp = ClusterConfig.from_yaml_file(str(CONFIGS / "accelerate" / "fsdp2.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_version"] == 2
    for cls in fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert isinstance(getattr(blocks, cls), type)
    ds = ClusterConfig.from_yaml_file(str(CONFIGS / "accelerate" / "deepspeed_zero2.yaml"))
    assert ds.distributed_type == "DEEPSPEED" and ds.deepspeed_config["zero_stage"] == 2
    cfg = TrainConfig.from_yaml(CONFIGS / "4m21_base_gpu.yaml")
    assert [d.weight for d in cfg.datasets] == [0.6, 0.2, 0.2]
    assert cfg.datasets[0].modalities is None and "rgb" in cfg.datasets[1].inputs
    c4 = cfg.datasets[2]
    assert c4.modalities == ("caption",) and c4.masking_dict(cfg.masking)["mixture"][0]["input_alphas"] == 1.0
