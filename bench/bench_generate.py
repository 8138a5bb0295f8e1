"""Generation latency of the reference configuration (random weights), one JSON line per case.

    python bench/bench_generate.py --reference-config --cases all --repeats 5 --threads 2

Each line carries a load indicator (``calib_mm512_ms``: a 512³ matmul timed between runs, 2.1 ms on the
quiet machine with 2 threads) and, with ``--threads 2``, ``quiet_estimate_ms`` (the median scaled by it: a
rough estimate only, when other processes compete for the cores); ``cpu_ms_median`` is the process CPU time
per generation, which with ``--threads 1`` approximates the quiet single-thread latency.

``--baseline`` also times the reference's algorithms on the same model and machine, interleaved with ours
(so that machine load affects both alike): autoregressive decoding without a KV cache (the whole prefix
re-decoded every step, logits for every prefix position) and ``torch.multinomial`` sampling everywhere.

Cases (rgb 224² pixels in): ``ar_caption_b1`` (32 caption tokens, temperature 1, no early stop),
``maskgit_depth_b1`` / ``maskgit_depth_b4`` (196 depth tokens, 8 cosine steps, temperature 1),
``roar_depth_b1`` (196 depth tokens, 8 linear steps). Reference figures on the 2-core dev machine
(NOTES.md): 659 ms, 557 ms, 2042 ms, 389 ms. ``ar_det_grammar_b1`` (no reference figure: 4M has no
constrained decoding): 32 det tokens as ``ar_caption_b1``, constrained by the det serializer's grammar
(compiled against a small trained vocabulary with the fixed head and the COCO class tokens); its cost is
its time against ``ar_caption_b1``'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

#: 512³ fp32 matmul with 2 threads on the quiet machine (NOTES.md): the load indicator's reference
QUIET_MM512_MS = 2.1
REFERENCE_MS = {"ar_caption_b1": 659.0, "maskgit_depth_b1": 557.0, "maskgit_depth_b4": 2042.0, "roar_depth_b1": 389.0}
#: cases without a reference figure
EXTRA_CASES = ("ar_det_grammar_b1",)
CASES = (*REFERENCE_MS, *EXTRA_CASES)


def _det_grammar():
    """The det serializer's compiled grammar over a small vocabulary with the shared fixed head and the COCO
    class names as whole tokens (the ids the grammar masks are those of the released vocabulary)."""
    from fourm_det.classes import COCO_CLASS_TOKENS
    from fourm_det.components import DetectionSerializer

    from fourm_core.generation.grammar import automaton_for
    from fourm_core.tokenizers import TextTokenizer

    tok = TextTokenizer.train(["a photo of a dog on a sofa"] * 4, special_tokens=COCO_CLASS_TOKENS,
                              vocab_size=4204 + len(COCO_CLASS_TOKENS) + 100)
    return automaton_for(DetectionSerializer(), tok, modality="det")


def _case(name: str):
    from fourm_core.generation import TargetConfig

    if name == "ar_caption_b1":
        return 1, TargetConfig(modality="caption", temperature=1.0, max_new_tokens=32, stop_at_eos=False)
    if name.startswith("maskgit_depth_b"):
        return int(name.rsplit("b", 1)[1]), TargetConfig(modality="depth", scheme="maskgit", steps=8,
                                                         token_schedule="cosine", temperature=1.0)
    if name == "ar_det_grammar_b1":
        return 1, TargetConfig(modality="det", temperature=1.0, max_new_tokens=32, stop_at_eos=False,
                               grammar=_det_grammar())
    if name == "roar_depth_b1":
        return 1, TargetConfig(modality="depth", scheme="roar", steps=8, token_schedule="linear", temperature=1.0)
    raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")


def _baseline_ar(sampler, inputs, target, seed: int):
    """The reference's autoregressive loop: encode once, then every step re-decode the whole prefix with a
    causal mask, compute logits for every prefix position and sample the last with torch.multinomial."""
    import torch

    g = torch.Generator().manual_seed(seed)
    model, backend = sampler.backend.model, sampler.backend
    mod_dict = sampler.prepare_inputs(inputs)
    spec = sampler.spec(target.modality)
    B = next(iter(mod_dict.values()))["tensor"].shape[0]
    empty = torch.zeros((B, spec.max_length), dtype=torch.long)
    empty[:, 0] = sampler.first_sentinel_id
    mask = torch.ones_like(empty, dtype=torch.bool)
    mask[:, 0] = False
    mod_dict[spec.name] = {"tensor": empty, "input_mask": mask}
    with torch.no_grad():
        cache = backend.context(mod_dict)
        out = torch.full((B, 1), sampler.first_sentinel_id, dtype=torch.long)
        for _ in range(target.max_new_tokens):
            pos = torch.arange(out.shape[1]).expand_as(out)
            x, e = model.decoder_queries(spec.name, pos, out)
            hidden = model.decode(x, e, cache, causal=True)
            logits = model.logits(spec.name, hidden)[:, -1]  # all positions computed, last one used
            probs = torch.softmax(logits / max(target.temperature, 1e-6), dim=-1)
            out = torch.cat([out, torch.multinomial(probs, 1, generator=g)], dim=1)
    return out


def _multinomial_sample_tokens(logits, temperature=1.0, top_k=0, top_p=0.0, generator=None):
    """The reference's sampling: softmax, then torch.multinomial per row."""
    import torch

    from fourm_core.generation.sampling import filter_logits

    shape = logits.shape[:-1]
    flat = filter_logits(logits.reshape(-1, logits.shape[-1]).float(), top_k, top_p)
    probs = torch.softmax(flat / temperature, dim=-1)
    ids = torch.multinomial(probs, 1, generator=generator)
    return ids.squeeze(-1).reshape(shape), probs.gather(-1, ids).squeeze(-1).reshape(shape)


def _run_baseline(sampler, inputs, target, seed: int):
    from fourm_core.generation import sampler as sampler_mod

    if target.modality == "caption":
        return _baseline_ar(sampler, inputs, target, seed)
    ours = sampler_mod.sample_tokens
    sampler_mod.sample_tokens = _multinomial_sample_tokens
    try:
        return sampler.generate(inputs, [target], seed=seed)
    finally:
        sampler_mod.sample_tokens = ours


def _calibrate(threads: int) -> float:
    """Median time (ms) of a 512³ fp32 matmul: how busy the machine is right now (2.1 ms quiet, 2 threads)."""
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-config", action="store_true", help="the reference's model and modalities (default)")
    p.add_argument("--cases", default="all", help=f"comma-separated, or 'all': {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", action="store_true", help="also time the reference's algorithms (interleaved)")
    p.add_argument("--no-int8-proposals", action="store_true",
                   help="autoregressive steps compute every float32 logit instead of sampling from the int8 "
                        "proposal table with exact rejection (Sampler(int8_proposals=False))")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _reference import reference_model

    from fourm_core.generation import Sampler

    torch.manual_seed(args.seed)
    model = reference_model()
    sampler = Sampler(model, int8_proposals=not args.no_int8_proposals)
    cases = CASES if args.cases == "all" else tuple(c.strip() for c in args.cases.split(",") if c.strip())
    for name in cases:
        batch, target = _case(name)
        pixels = torch.randn(batch, 3, 224, 224)
        inputs = {"rgb": {"tensor": pixels}}
        times, base_times, calib, cpu, base_cpu = [], [], [], [], []
        for i in range(args.warmup + args.repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            result = sampler.generate(inputs, [target], seed=args.seed + i)
            dt, dc = (time.perf_counter() - t0) * 1000.0, (time.process_time() - c0) * 1000.0
            if args.baseline:
                c0, t0 = time.process_time(), time.perf_counter()
                _run_baseline(sampler, inputs, target, args.seed + i)
                bt, bc = (time.perf_counter() - t0) * 1000.0, (time.process_time() - c0) * 1000.0
            if i >= args.warmup:
                calib.append(_calibrate(args.threads))
                times.append(dt)
                cpu.append(dc)
                if args.baseline:
                    base_times.append(bt)
                    base_cpu.append(bc)
        tokens = result.tokens[target.modality]
        med = statistics.median(times)
        line = {
            "case": name, "ms_median": round(med, 1), "ms_min": round(min(times), 1), "repeats": args.repeats,
            "threads": args.threads, "batch": batch, "tokens_shape": list(tokens.shape),
            "reference_ms": REFERENCE_MS.get(name),
            "speedup_vs_reference": round(REFERENCE_MS[name] / med, 2) if name in REFERENCE_MS else None,
            "params": model.num_parameters(),
            # whether autoregressive steps really used an int8 table (False without the quantized kernels)
            "int8_proposals": name.startswith("ar_") and sampler.backend.proposal_table(target.modality) is not None,
            "calib_mm512_ms": round(statistics.median(calib), 2),
            # CPU time of this process (all threads): with --threads 1 close to the quiet latency under load
            "cpu_ms_median": round(statistics.median(cpu), 1),
        }
        if args.threads == 2:  # rough: scales by how much slower a plain matmul is than on the quiet machine
            line["quiet_estimate_ms"] = round(med * QUIET_MM512_MS / max(line["calib_mm512_ms"], QUIET_MM512_MS), 1)
        if args.baseline:
            bmed = statistics.median(base_times)
            line.update(baseline_ms_median=round(bmed, 1), speedup_vs_baseline=round(bmed / med, 2),
                        baseline_cpu_ms_median=round(statistics.median(base_cpu), 1))
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
