"""Generation latency of the reference configuration (random weights), one JSON line per case.

    python bench/bench_generate.py --reference-config --cases all --repeats 5 --threads 2

Cases (rgb 224² pixels in): ``ar_caption_b1`` (32 caption tokens, temperature 1, no early stop),
``maskgit_depth_b1`` / ``maskgit_depth_b4`` (196 depth tokens, 8 cosine steps, temperature 1),
``roar_depth_b1`` (196 depth tokens, 8 linear steps). Reference figures on the 2-core dev machine
(NOTES.md): 659 ms, 557 ms, 2042 ms, 389 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REFERENCE_MS = {"ar_caption_b1": 659.0, "maskgit_depth_b1": 557.0, "maskgit_depth_b4": 2042.0, "roar_depth_b1": 389.0}
CASES = tuple(REFERENCE_MS)


def _case(name: str):
    from fourm_core.generation import TargetConfig

    if name == "ar_caption_b1":
        return 1, TargetConfig(modality="caption", temperature=1.0, max_new_tokens=32, stop_at_eos=False)
    if name.startswith("maskgit_depth_b"):
        return int(name.rsplit("b", 1)[1]), TargetConfig(modality="depth", scheme="maskgit", steps=8,
                                                         token_schedule="cosine", temperature=1.0)
    if name == "roar_depth_b1":
        return 1, TargetConfig(modality="depth", scheme="roar", steps=8, token_schedule="linear", temperature=1.0)
    raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-config", action="store_true", help="the reference's model and modalities (default)")
    p.add_argument("--cases", default="all", help=f"comma-separated, or 'all': {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _reference import reference_model

    from fourm_core.generation import Sampler

    torch.manual_seed(args.seed)
    model = reference_model()
    sampler = Sampler(model)
    cases = CASES if args.cases == "all" else tuple(c.strip() for c in args.cases.split(",") if c.strip())
    for name in cases:
        batch, target = _case(name)
        pixels = torch.randn(batch, 3, 224, 224)
        inputs = {"rgb": {"tensor": pixels}}
        times = []
        for i in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            result = sampler.generate(inputs, [target], seed=args.seed + i)
            dt = (time.perf_counter() - t0) * 1000.0
            if i >= args.warmup:
                times.append(dt)
        tokens = result.tokens[target.modality]
        med = statistics.median(times)
        print(json.dumps({
            "case": name, "ms_median": round(med, 1), "ms_min": round(min(times), 1), "repeats": args.repeats,
            "threads": args.threads, "batch": batch, "tokens_shape": list(tokens.shape),
            "reference_ms": REFERENCE_MS.get(name), "speedup": round(REFERENCE_MS[name] / med, 2) if name in REFERENCE_MS else None,
            "params": model.num_parameters(),
        }), flush=True)


if __name__ == "__main__":
    main()
