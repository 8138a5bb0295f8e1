"""Times the reference 4M's training step on batches written by ``bench_train.py`` (an instrument, run only by it).

Runs under the reference's own interpreter (``tools/reference-env.sh`` builds it; ``PYTHONPATH`` = its source):
``bench_train.py --reference-python PY --reference-src DIR`` starts this script once, then asks it for timed
chunks of steps through stdin (``run N``) so that both implementations are timed interleaved in the same
minutes. The model is the reference's own ``FourM`` class with the reference configuration (dim 256, 4 + 4
blocks, 4 heads, GELU with biases, tied output tables, shared modality embeddings) over the 4M-7 modalities
with its default embeddings; the optimizer is ``torch.optim.AdamW`` built as the reference's training script
builds it (no ``fused`` / ``foreach`` argument: the default implementation on the CPU). Replies are one JSON
line per command.

Nothing here is imported by fourm or its tests.
"""

from __future__ import annotations

import json
import random
import sys
import time

#: our modality names → the reference's
NAMES = {"rgb": "rgb@224", "tok_rgb": "tok_rgb@224", "depth": "tok_depth@224", "normal": "tok_normal@224",
         "clip": "tok_clip@224", "semseg": "tok_semseg@224", "caption": "caption", "det": "det"}


def _build(dim: int, enc_depth: int, dec_depth: int, heads: int):
    import torch
    from fourm.data.modality_info import MODALITY_INFO
    from fourm.models.fm import FourM

    enc, dec = {}, {}
    for ours, ref in NAMES.items():
        info = MODALITY_INFO[ref]
        kw = dict(patch_size=16, image_size=224) if info["type"] == "img" else {}
        enc[ref] = info["encoder_embedding"](**kw)
        if ours != "rgb":
            dec[ref] = info["decoder_embedding"](**kw)
    model = FourM(encoder_embeddings=enc, decoder_embeddings=dec, modality_info={m: MODALITY_INFO[m] for m in enc},
                  dim=dim, encoder_depth=enc_depth, decoder_depth=dec_depth, num_heads=heads, mlp_ratio=4.0,
                  qkv_bias=True, proj_bias=True, mlp_bias=True, act_layer=torch.nn.GELU,
                  share_modality_embeddings=True).train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(".bias") or "emb" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95))
    return model, opt


def main() -> None:
    import torch

    path, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    # Python >= 3.11 rejects random.sample over dict items (the reference's decoder concatenation); a tuple
    # population gives the Python 3.10 behaviour
    sample = random.sample
    random.sample = lambda population, k, **kw: sample(tuple(population), k, **kw)
    data = torch.load(path)
    torch.manual_seed(0)
    model, opt = _build(*data["model"])
    batches = [{NAMES[m]: d for m, d in md.items()} for md in data["batches"]]
    n_enc, n_dec = data["tokens"]
    print(json.dumps({"ready": True, "params": sum(p.numel() for p in model.parameters())}), flush=True)
    i = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] != "run":
            break
        total, fwd, bwd, ost, cpu = [], [], [], [], []
        for _ in range(int(cmd[1])):
            md = batches[i % len(batches)]
            i += 1
            cpu0 = time.process_time()
            a = time.perf_counter()
            loss, _ = model(md, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec)
            b = time.perf_counter()
            loss.backward()
            c = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            d = time.perf_counter()
            total.append(d - a), fwd.append(b - a), bwd.append(c - b), ost.append(d - c)
            cpu.append(time.process_time() - cpu0)
        print(json.dumps({"total": total, "forward": fwd, "backward": bwd, "optimizer": ost, "cpu": cpu,
                          "loss": float(loss)}), flush=True)


if __name__ == "__main__":
    main()
