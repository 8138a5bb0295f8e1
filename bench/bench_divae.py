"""DiVAE diffusion decoding latency (random weights), one JSON line per case.

    python bench/bench_divae.py --threads 2

Cases: ``tiny`` — the release set's tiny decoder (``unet_tiny``: patched UNet, patch 4, 32 channels, one
res block, two levels; 3x32² images from a 32-dim 4x4 latent), decoded in full; ``full`` — the released
``unet_patched`` (196 M parameters; 3x224² from a 32-dim 14x14 latent). Both use the DiVAE defaults (DDPM,
v-prediction, zero terminal SNR). The full-size decoder is too slow on this CPU to run every step count, so
``--full-measure`` steps are timed after one warm-up step and the per-step median is multiplied out
(``extrapolated: true``; the sampling loop's other work, one randn per step, is negligible next to a 196 M
parameter UNet). Step counts: 25 (the reference demos' decode_dict / decode_tok_* default), 10, and 1000 (the
decode_tokens default, full size extrapolated only). Each line carries ``calib_mm512_ms`` (a 512³ fp32 matmul
timed in the same run: 2.1 ms on the quiet 2-core dev machine); tiny lines also the fastest run (``ms_min``) and
the process CPU time per decode (``cpu_ms_median``, all threads), which a busy machine inflates less.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

TINY = {"patch_size": 4, "model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [2],
        "channel_mult": (1, 1)}
CASES = {
    "tiny": ({"dec_type": "unet_tiny", "n_channels": 3, "latent_dim": 32, "image_size": 32}, (4, 4)),
    "full": ({"dec_type": "unet_patched", "n_channels": 3, "latent_dim": 32, "image_size": 224}, (14, 14)),
}


def _calib() -> float:
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _randomize(m: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the zero-initialised output convs would make the network constant
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p[0].numel()) ** 0.5))
    return m.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="tiny,full")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--steps", default="25,10", help="step counts decoded in full (tiny) / extrapolated (full)")
    ap.add_argument("--full-measure", type=int, default=2, help="timed steps per full-size measurement")
    ap.add_argument("--repeats", type=int, default=3, help="tiny: decodes timed per line (median)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fourm_core.tokenizers.ml4m import diffusion as D

    if not D.is_diffusion_arch("unet_tiny"):
        D.register_diffusion_arch("unet_tiny", TINY)
    steps_list = [int(s) for s in args.steps.split(",")]
    for case in args.cases.split(","):
        config, grid = CASES[case]
        decoder = _randomize(D.build_diffusion_decoder(config))
        n_params = sum(p.numel() for p in decoder.parameters())
        for batch in (int(b) for b in args.batches.split(",")):
            quant = torch.randn(batch, config["latent_dim"], *grid)
            if case == "tiny":
                for steps in steps_list:
                    D.diffusion_decode(decoder, quant, config, steps=steps)  # warm-up
                    times, cpu = [], []
                    for _ in range(args.repeats):
                        t, c = time.perf_counter(), time.process_time()
                        D.diffusion_decode(decoder, quant, config, steps=steps)
                        times.append(time.perf_counter() - t)
                        cpu.append(time.process_time() - c)
                    ms = statistics.median(times) * 1000
                    print(json.dumps({"bench": "divae_decode", "case": case, "params": n_params, "batch": batch,
                                      "steps": steps, "ms": round(ms, 1), "ms_min": round(min(times) * 1000, 1),
                                      "ms_per_image": round(ms / batch, 1),
                                      "cpu_ms_median": round(statistics.median(cpu) * 1000, 1),
                                      "extrapolated": False, "calib_mm512_ms": round(_calib(), 2)}), flush=True)
                continue
            per_step = _time_full_steps(D, decoder, quant, config, args.full_measure)
            for steps in steps_list + [1000]:
                ms = per_step * steps
                print(json.dumps({"bench": "divae_decode", "case": case, "params": n_params, "batch": batch,
                                  "steps": steps, "ms": round(ms, 0), "ms_per_image": round(ms / batch, 0),
                                  "ms_per_step": round(per_step, 1), "measured_steps": args.full_measure,
                                  "extrapolated": True, "calib_mm512_ms": round(_calib(), 2)}), flush=True)


def _time_full_steps(D, decoder, quant, config, measure: int) -> float:
    """Median ms of one sampling step (scheduler step + network), from a ``measure + 1``-step decode whose first
    network call is the warm-up: the trace hook runs right after each network call, so consecutive hook times
    bracket one scheduler step and the next network call."""
    stamps: list[float] = []
    D.diffusion_decode(decoder, quant, config, steps=measure + 1, trace=lambda *a: stamps.append(time.perf_counter()))
    return statistics.median(b - a for a, b in zip(stamps[:-1], stamps[1:])) * 1000


if __name__ == "__main__":
    main()
