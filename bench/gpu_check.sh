#!/usr/bin/env bash
# GPU check of fourm: one prepared script for a lent GPU machine (<= 8 minutes: the step timeouts sum to 480 s),
# printing JSON lines.
#
#   bash bench/gpu_check.sh            # on the GPU machine, from the repository root (a plain checkout)
#   bash bench/gpu_check.sh --dry-run  # anywhere: syntax, the plan, and each step at toy size on the CPU
#
# It needs only the checkout: it installs what it needs with pip from the registry (torch only when the
# installed one has no CUDA; then fourm's packages editable, --no-build-isolation). Steps, each bounded by a
# timeout and reported as {"step": ..., "ok": ...} even when it fails:
#   1. install         pip installs (skipped under --dry-run)
#   2. env             torch / CUDA / device / bf16 support
#   3. cuda_tests      the test suite's tests carrying a `requires` marker (the CUDA-marked ones run here)
#                      plus tests/trainers/test_scale_*.py
#   4. train_bf16      a bf16 training benchmark at base size (12+12 blocks, dim 768, the 4M-7 modalities,
#                      batch 64, 256 + 256 tokens): tokens/s, MFU (FLOPs of one step counted by
#                      torch.utils.flop_counter over the model's real ops / step time / the device's peak bf16
#                      FLOP/s; set GPU_PEAK_TFLOPS to override the table), peak memory
#   5. generate_cuda   the generation cases of bench/bench_generate.py on CUDA (median ms)
#   6. fsdp_smoke      `accelerate launch` with configs/accelerate/fsdp2.yaml on 1 GPU: 6 steps of the debug
#                      model on a generated store, a sharded save_state, then a resume to 8 steps and the
#                      gathered final model (loaded back and checked)
# Figures go into bench/README.md ("GPU" section) by hand.
set -u
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fourm_gpu_check.XXXXXX")"
export PY WORK HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 FOURM_GPU_CHECK_DRY=$DRY FOURM_GPU_CHECK_WORK="$WORK"

emit() { printf '%s\n' "$1"; }
run_step() {  # run_step NAME TIMEOUT_S COMMAND...: the command prints its own JSON lines; this adds ok/seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  if declare -F "$1" > /dev/null; then  # a shell function: run it in a bash that knows it
    timeout "$limit" bash -c "$(declare -f emit "$1"); $1" > "$WORK/$name.log" 2>&1
  else
    timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  fi
  local rc=$?
  grep -E '^\{' "$WORK/$name.log" || true
  [ $rc -ne 0 ] && tail -n 15 "$WORK/$name.log" | sed 's/"/\\"/g; s/^/# /' >&2
  emit "{\"step\": \"$name\", \"ok\": $([ $rc -eq 0 ] && echo true || echo false), \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}"
}

if [ $DRY -eq 1 ]; then
  bash -n "${BASH_SOURCE[0]}" && emit '{"step": "syntax", "ok": true}'
else
  install() {
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      "$PY" -m pip install -q "torch==2.14.1" || return 1
    fi
    local plugins=""
    for d in plugins/*/; do plugins="$plugins -e ./$d"; done
    "$PY" -m pip install -q -e . -e "./core[testing]" -e ./trainers $plugins || return 1
    "$PY" -m pip install -q deepspeed || true   # optional: the DeepSpeed tests skip without it
    emit '{"install": "done"}'
  }
  run_step install 120 install
fi

run_step env 30 "$PY" - <<'EOF'
import json, torch
d = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
if torch.cuda.is_available():
    d.update(device=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
             memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
print(json.dumps({"env": d}))
EOF

if [ $DRY -eq 1 ]; then
  run_step cuda_tests 120 "$PY" -m pytest -q -p no:cacheprovider --collect-only -m requires tests
else
  run_step cuda_tests 80 "$PY" -m pytest -q -p no:cacheprovider -x -m requires tests tests/trainers/test_scale_schedules.py
fi

run_step train_bf16 80 "$PY" - <<'EOF'
import json, os, statistics, sys, time
import torch
sys.path.insert(0, "bench")
from bench_train import _modalities, _raw_batch
from fourm_core.masking import Masker, MaskingConfig
from fourm_core.model import build_model

dry = os.environ["FOURM_GPU_CHECK_DRY"] == "1"
cuda = torch.cuda.is_available() and not dry
dev = torch.device("cuda" if cuda else "cpu")
preset, batch, tokens, steps = ("debug", 2, 32, 2) if dry else ("base", 64, 256, 12)
mods = _modalities(256)
model = build_model(mods, {"preset": preset}).to(dev)
masker = Masker(mods, MaskingConfig.from_dict({"input_tokens": tokens, "target_tokens": tokens,
                                                "mixture": [{"input_alphas": 0.5, "target_alphas": 0.5}]}))
gen = torch.Generator().manual_seed(0)
batches = []
for i in range(3):
    md = masker(_raw_batch(mods, batch, gen), generator=gen)
    batches.append({m: {k: t.to(dev) for k, t in d.items()} for m, d in md.items()})
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=True)

def step(md):
    with amp:
        out = model(md, num_encoder_tokens=masker.num_encoder_tokens, num_decoder_tokens=masker.num_decoder_tokens)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

from torch.utils.flop_counter import FlopCounterMode
counter = FlopCounterMode(display=False)
with counter:
    step(batches[0])
flops = counter.get_total_flops()
for i in range(2):
    step(batches[i % 3])
if cuda:
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
times = []
for i in range(steps):
    t0 = time.perf_counter(); step(batches[i % 3])
    if cuda:
        torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
med = statistics.median(times)
name = torch.cuda.get_device_name(0) if cuda else "cpu"
table = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}
peak = float(os.environ.get("GPU_PEAK_TFLOPS") or next((v for k, v in table.items() if k in name), 0.0))
print(json.dumps({"train_bf16": {
    "device": name, "preset": preset, "params": model.num_parameters(), "batch": batch,
    "tokens_per_step": batch * 2 * tokens, "ms_per_step": round(med * 1000, 1),
    "tokens_per_s": round(batch * 2 * tokens / med), "step_gflop": round(flops / 1e9, 2),
    "achieved_tflops": round(flops / med / 1e12, 3), "peak_tflops": peak or None,
    "mfu": round(flops / med / (peak * 1e12), 3) if peak else None,
    "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}}))
EOF

run_step generate_cuda 60 "$PY" - <<'EOF'
import json, os, statistics, sys, time
import torch
sys.path.insert(0, "bench")
from _reference import reference_model
from bench_generate import CASES, _case
from fourm_core.generation import Sampler

dry = os.environ["FOURM_GPU_CHECK_DRY"] == "1"
cuda = torch.cuda.is_available() and not dry
dev = torch.device("cuda" if cuda else "cpu")
torch.manual_seed(0)
model = reference_model().to(dev).eval()
sampler = Sampler(model, int8_proposals=False)
for name in (CASES[:1] if dry else CASES):
    b, target = _case(name)
    inputs = {"rgb": {"tensor": torch.randn(b, 3, 224, 224, device=dev)}}
    times = []
    for i in range(1 if dry else 6):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        sampler.generate(inputs, [target], seed=i)
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    rest = times[1:] or times
    print(json.dumps({"generate_cuda": {"case": name, "device": str(dev), "ms_median": round(statistics.median(rest), 1),
                                        "ms_first": round(times[0], 1)}}))
EOF

fsdp_smoke() {
  "$PY" - <<'EOF' || return 1
import os, numpy as np, yaml
from fourm_core.data import Store
from fourm_registry import get_modalities
work = os.environ["FOURM_GPU_CHECK_WORK"]
ms = get_modalities()
url = f"{work}/smoke.zarr"
n = 32
st = Store.create(url, n, samples_per_shard=8, raw_size=112)
st.ensure_crops(1, seed=0)
st.write_crops(0, np.tile(np.array([[[0, 0, 112, 112, 0]]], dtype=np.int32), (n, 1, 1)))
rng = np.random.default_rng(0)
for name in ("canny_edge", "tok_rgb"):
    st.ensure_tokens(ms[name], 1)
    st.write_tokens(ms[name], 0, rng.integers(0, 32, (n, 1, 196)))
cfg = {"out_dir": f"{work}/smoke_run", "datasets": [{"path": url}], "model": {"preset": "debug"},
       "modalities": ["canny_edge", "tok_rgb"], "masking": {"input_tokens": 24, "target_tokens": 24},
       "batch_size": 4, "max_steps": 8, "save_every": 3, "optimizer": {"lr": 1e-3}, "seed": 0}
open(f"{work}/smoke.yaml", "w").write(yaml.safe_dump(cfg))
EOF
  local launch=("$PY" -m accelerate.commands.accelerate_cli launch --config_file trainers/fourm_trainers/configs/accelerate/fsdp2.yaml
                --num_processes 1 -m fourm_trainers.train --config "$WORK/smoke.yaml")
  if [ "$FOURM_GPU_CHECK_DRY" = "1" ]; then   # FSDP needs a GPU under Accelerate: the plain CPU run instead
    launch=("$PY" -m fourm_trainers.train --config "$WORK/smoke.yaml" --set cpu=true)
  fi
  "${launch[@]}" --set max_steps=6 || return 1
  "${launch[@]}" --resume || return 1
  "$PY" - <<'EOF' || return 1
import json, os
import torch
from fourm_core.model import FourM
work = os.environ["FOURM_GPU_CHECK_WORK"]
m = FourM.from_pretrained(f"{work}/smoke_run/final")
s = json.load(open(f"{work}/smoke_run/summary.json"))
ok = all(torch.isfinite(p).all() for p in m.parameters()) and s["step"] == 8
print(json.dumps({"fsdp_smoke": {"final_step": s["step"], "params": m.num_parameters(), "device": s["device"],
                                 "mixed_precision": s["mixed_precision"], "finite": bool(ok),
                                 "checkpoints": sorted(os.listdir(f"{work}/smoke_run/checkpoints"))}}))
raise SystemExit(0 if ok else 1)
EOF
}
run_step fsdp_smoke 110 fsdp_smoke
emit "{\"step\": \"done\", \"work\": \"$WORK\"}"
