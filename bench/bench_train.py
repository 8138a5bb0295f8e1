"""Training-step benchmark of the fourm 4M model (CPU, fp32). Prints one JSON line.

``--reference-config`` builds the configuration the reference 4M was measured on (NOTES.md: 1012 ms/step,
2023 tokens/s on the 2-core machine): dim 256, 4 + 4 blocks, 4 heads, MLP ratio 4, GELU with biases, tied
output heads, shared modality embeddings; the 4M-7 modality set with the reference's vocabularies (rgb pixels
224/16 as input only; rgb tokens 16384; depth, normal, CLIP 8192; semseg 4096; caption and det 30000 with
max length 256), batch 8, 128 input + 128 target tokens drawn by the Dirichlet masking (α 0.5, all2all +
rgb2all mixture), AdamW (β 0.9 / 0.95, weight decay 0.05), fp32.

Example::

    python bench/bench_train.py --reference-config --threads 2 --steps 20 --warmup 3

The reference implementation timed in the same run (the ratio is what counts: this VM's speed changes from
day to day)::

    tools/reference-env.sh   # once: builds the reference's venv, prints its python and source paths
    python bench/bench_train.py --reference-config --threads 2 --steps 5 --rounds 3 \
        --reference-python /tmp/venv-ref/bin/python --reference-src /tmp/ml4m-src

It starts ``_reference_train.py`` under that interpreter on the same masked batches and times both in
alternating chunks of ``--steps`` steps (``--rounds`` chunks each, after ``--warmup`` steps each); the
output adds ``reference_ms_per_step`` and ``speedup_vs_reference`` (the ratio of the two medians).
``--plain`` times the model's plain training path (no :func:`fourm_core.accel.prepare_training`).

Output keys: ``ms_per_step`` (median over the timed steps), ``tokens_per_s`` (batch × (input + target
tokens) / median step), ``peak_rss_mib``, ``params``, plus the configuration and a per-phase breakdown
(forward / backward / optimizer medians in ms) and a load indicator (``calib_mm512_ms``: a 512³ matmul timed
between steps, 2.1 ms when the machine is quiet; ``quiet_estimate_ms`` scales the step time by it, a rough
estimate only when other processes compete for the cores; ``cpu_ms_per_step`` is the process CPU time per step,
which with ``--threads 1`` approximates the quiet single-thread step time). Masked batches are drawn before timing (the data loader's job
in training); ``masking_ms`` reports their cost per batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

#: 512³ fp32 matmul with 2 threads on the quiet reference machine (NOTES.md); the estimate needs --threads 2
QUIET_MM512_MS = 2.1


def _modalities(seq_len: int):
    from fourm_registry import ModalitySet, ModalitySpec

    ser = "fourm_core.compat.serializer:PlainTextSerializer"
    img = dict(kind="image", grid=(14, 14))
    return ModalitySet([
        ModalitySpec(name="rgb", kind="pixels", grid=(14, 14), patch_size=16, channels=3, decoder=False),
        ModalitySpec(name="tok_rgb", vocab_size=16384, **img),
        ModalitySpec(name="depth", vocab_size=8192, **img),
        ModalitySpec(name="normal", vocab_size=8192, **img),
        ModalitySpec(name="clip", vocab_size=8192, **img),
        ModalitySpec(name="semseg", vocab_size=4096, **img),
        ModalitySpec(name="caption", kind="sequence", vocab_size=30000, max_length=seq_len, serializer=ser),
        ModalitySpec(name="det", kind="sequence", vocab_size=30000, max_length=seq_len, serializer=ser),
    ])


def _raw_batch(mods, batch: int, gen):
    """Random data in the masker's input layout (token ids, pixels, sequences ending in [EOS] + [PAD])."""
    import torch

    out = {}
    for spec in mods.specs:
        if spec.kind == "pixels":
            out[spec.name] = torch.randn(batch, spec.channels, *spec.image_size, generator=gen)
        elif spec.kind == "image":
            out[spec.name] = torch.randint(0, spec.vocab_size, (batch, spec.num_tokens), generator=gen)
        else:
            L = spec.max_length
            seq = torch.randint(204, spec.vocab_size, (batch, L), generator=gen)
            lengths = torch.randint(L // 8, L // 2, (batch,), generator=gen)
            pos = torch.arange(L)[None]
            seq = torch.where(pos < lengths[:, None], seq, torch.zeros_like(seq))
            seq[torch.arange(batch), lengths] = 3  # [EOS]
            out[spec.name] = seq
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reference-config", action="store_true", help="the reference's measured configuration")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--encoder-depth", type=int, default=4)
    p.add_argument("--decoder-depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--act", choices=["gelu", "swiglu"], default="gelu")
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--target-tokens", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--optimizer", choices=["fused", "foreach", "loop"], default="fused",
                   help="AdamW implementation (same maths; fused = one kernel over all parameters)")
    p.add_argument("--plain", action="store_true", help="the plain training path (no accel.prepare_training)")
    p.add_argument("--rounds", type=int, default=1, help="chunks of --steps steps (alternating with the reference)")
    p.add_argument("--reference-python", help="the reference's interpreter: time it in the same run")
    p.add_argument("--reference-src", help="the reference's source directory (its PYTHONPATH)")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step to stderr")
    args = p.parse_args(argv)
    if args.reference_config:
        args.batch, args.dim, args.encoder_depth, args.decoder_depth, args.heads = 8, 256, 4, 4, 4
        args.act, args.input_tokens, args.target_tokens, args.seq_len, args.alpha = "gelu", 128, 128, 256, 0.5

    import torch

    torch.set_num_threads(args.threads)
    from fourm_core.masking import Masker, MaskingConfig
    from fourm_core.model import build_model

    torch.manual_seed(0)
    mods = _modalities(args.seq_len)
    cfg = dict(dim=args.dim, encoder_depth=args.encoder_depth, decoder_depth=args.decoder_depth,
               num_heads=args.heads, act=args.act)
    model = build_model(mods, cfg).train()
    if not args.plain:
        from fourm_core.accel import prepare_training

        prepare_training(model)
    masking = MaskingConfig.from_dict({
        "input_tokens": args.input_tokens, "target_tokens": args.target_tokens,
        "mixture": [
            {"name": "all2all", "weight": 1.0, "input_alphas": args.alpha, "target_alphas": args.alpha},
            {"name": "rgb2all", "weight": 1.0, "input_alphas": {"*": 0.0, "rgb": 1000.0},
             "target_alphas": {"*": args.alpha, "rgb": 0.0}},
        ],
    })
    masker = Masker(mods, masking)
    gen = torch.Generator().manual_seed(0)
    n_batches = 4
    t0 = time.perf_counter()
    batches = [masker(_raw_batch(mods, args.batch, gen), generator=gen) for _ in range(n_batches)]
    masking_ms = (time.perf_counter() - t0) * 1000 / n_batches
    n_enc, n_dec = masker.num_encoder_tokens, masker.num_decoder_tokens

    decay = [p_ for n, p_ in model.named_parameters() if p_.ndim >= 2 and not n.endswith(("mod_emb", "pos_emb"))
             and n != "mask_token"]
    no_decay = [p_ for n, p_ in model.named_parameters() if not any(p_ is q for q in decay)]
    impl = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}[args.optimizer]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), **impl)

    fwd, bwd, ost, total, calib, cpu = [], [], [], [], [], []
    ca, cb = torch.randn(512, 512), torch.randn(512, 512)

    def calibrate() -> None:
        """512³ fp32 matmul time now: NOTES.md measured 2.1 ms on the quiet 2-core machine (load indicator)."""
        ca @ cb
        t = time.perf_counter()
        for _ in range(3):
            ca @ cb
        calib.append((time.perf_counter() - t) / 3)

    def step(i: int) -> None:
        md = batches[i % n_batches]
        cpu0 = time.process_time()
        a = time.perf_counter()
        out = model(md, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec)
        b = time.perf_counter()
        out.loss.backward()
        c = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        d = time.perf_counter()
        fwd.append(b - a), bwd.append(c - b), ost.append(d - c), total.append(d - a)
        cpu.append(time.process_time() - cpu0)

    ref = _start_reference(args, batches, n_enc, n_dec) if args.reference_python else None
    ref_total: list[float] = []
    ref_cpu: list[float] = []
    for i in range(args.warmup):
        step(i)
    if ref is not None:
        ref.run(args.warmup)
    fwd.clear(), bwd.clear(), ost.clear(), total.clear(), cpu.clear()
    done = 0
    for _ in range(args.rounds):
        for _ in range(args.steps):
            calibrate()
            step(done)
            done += 1
        if ref is not None:
            calibrate()
            got = ref.run(args.steps)
            ref_total += got["total"]
            ref_cpu += got["cpu"]
    calibrate()
    if ref is not None:
        ref.close()
    if args.profile:
        import sys

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(0)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)

    med = statistics.median(total)
    tokens = args.batch * (args.input_tokens + args.target_tokens)
    print(json.dumps({
        "bench": "train_step", "ms_per_step": round(med * 1000, 1), "tokens_per_s": round(tokens / med, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "params": model.num_parameters(), "threads": args.threads, "batch": args.batch,
        "input_tokens": args.input_tokens, "target_tokens": args.target_tokens, "dim": args.dim,
        "depth": [args.encoder_depth, args.decoder_depth], "optimizer": args.optimizer,
        "forward_ms": round(statistics.median(fwd) * 1000, 1), "backward_ms": round(statistics.median(bwd) * 1000, 1),
        "optimizer_ms": round(statistics.median(ost) * 1000, 1), "masking_ms": round(masking_ms, 1),
        "steps": args.steps, "reference_config": args.reference_config,
        # CPU time of this process per step (all threads): with --threads 1 close to the quiet step time
        "cpu_ms_per_step": round(statistics.median(cpu) * 1000, 1),
        "calib_mm512_ms": round(statistics.median(calib) * 1000, 2),
        # load-normalised estimate: step time scaled by how much slower a 512³ matmul ran than when quiet
        "quiet_estimate_ms": (round(med * 1000 * min(1.0, QUIET_MM512_MS / (statistics.median(calib) * 1000)), 1)
                              if args.threads == 2 else None),
        "plain": args.plain, "rounds": args.rounds,
        **({"reference_ms_per_step": round(statistics.median(ref_total) * 1000, 1),
            "reference_tokens_per_s": round(tokens / statistics.median(ref_total), 1),
            "reference_params": ref.params,
            "reference_cpu_ms_per_step": round(statistics.median(ref_cpu) * 1000, 1),
            # the same ratio in process CPU time: less sensitive to how much of the cores other processes took
            "cpu_speedup_vs_reference": round(statistics.median(ref_cpu) / statistics.median(cpu), 3),
            "speedup_vs_reference": round(statistics.median(ref_total) / med, 3)} if ref_total else {}),
    }))


class _Reference:
    """The reference's training step in a child process (``_reference_train.py``), timed on request."""

    def __init__(self, proc, tmp):
        self.proc, self.tmp = proc, tmp
        ready = json.loads(self._line())
        self.params = ready["params"]

    def _line(self) -> str:
        """The next JSON line of the child (other output, e.g. prints at import, goes to stderr)."""
        import sys

        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"the reference process stopped (exit {self.proc.wait()}); its stderr is above")
            if line.startswith("{"):
                return line
            sys.stderr.write(f"[reference] {line}")

    def run(self, steps: int) -> dict:
        self.proc.stdin.write(f"run {steps}\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        self.proc.stdin.write("stop\n")
        self.proc.stdin.close()
        self.proc.wait()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def _start_reference(args, batches, n_enc: int, n_dec: int) -> _Reference:
    """Write the masked batches to a temporary file and start the reference's timing process on them."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import torch

    if not args.reference_src or not args.reference_config:
        raise SystemExit("--reference-python needs --reference-src (the reference's source directory) and "
                         "--reference-config (the configuration the reference is built in)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_ref_"))
    path = tmp / "batches.pt"
    torch.save({"batches": batches, "tokens": (n_enc, n_dec),
                "model": (args.dim, args.encoder_depth, args.decoder_depth, args.heads)}, path)
    env = dict(os.environ, PYTHONPATH=args.reference_src, OMP_NUM_THREADS=str(args.threads))
    script = Path(__file__).with_name("_reference_train.py")
    proc = subprocess.Popen([args.reference_python, "-W", "ignore", str(script), str(path), str(args.threads)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, stderr=sys.stderr)
    return _Reference(proc, tmp)


if __name__ == "__main__":
    main()
