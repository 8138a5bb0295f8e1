"""Throughput of the data pipeline on real photos: ingest, weight-free labeling, the training loader.

Prints one JSON line per measurement. Uses the installed plugins canny_edge, color_palette and metadata
(weight-free labelers) and the rgb pixels modality; the photos are the sample images shipped by
scikit-image / scikit-learn / matplotlib, repeated to ``--images``.

    OMP_NUM_THREADS=1 python bench/bench_data.py --images 64 --raw-size 256 --workers 0,2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _photos(folder: Path, n: int) -> None:
    import skimage.data as sd
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    base = [getattr(sd, k)() for k in ("astronaut", "chelsea", "coffee", "rocket")]
    base += list(load_sample_images().images)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        base.append(__import__("numpy").asarray(Image.open(f).convert("RGB")))
    for i in range(n):
        Image.fromarray(base[i % len(base)]).save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--raw-size", type=int, default=256)
    ap.add_argument("--samples-per-shard", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", default="0,2", help="DataLoader worker counts to measure")
    ap.add_argument("--labelers", default="canny_edge,color_palette,metadata")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from fourm_core.data import FourMCollate, FourMDataset, FourMSampler, ingest, label
    from fourm_registry import get_modalities

    common = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "raw_size": args.raw_size}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        _photos(src, args.images)
        url = str(Path(tmp) / "bench.zarr")
        rep = ingest(src, url, samples_per_shard=args.samples_per_shard, raw_size=args.raw_size, progress=False)
        print(json.dumps({"bench": "ingest", "images": rep.num_samples, "seconds": round(rep.seconds, 3),
                          "images_per_s": round(rep.num_samples / rep.seconds, 1), **common}))
        for name in [m for m in args.labelers.split(",") if m]:
            r = label(url, [name], progress=False)[name]
            print(json.dumps({"bench": "label", "modality": name, "images": r.samples, "seconds": round(r.seconds, 3),
                              "images_per_s": round(r.samples / r.seconds, 1), **common}))
        mods = get_modalities().subset(["rgb", *[m for m in args.labelers.split(",") if m]])
        # the loader reads tokens; tokenizer quality is irrelevant to read speed, so fill the token arrays with
        # seeded random ids of the right layout (2 crops) instead of running untrained tokenizers
        import numpy as np

        from fourm_core.data import Store, crop_params

        store = Store.open(url, "r+")
        store.ensure_crops(2, seed=0)
        store.write_crops(0, crop_params(range(store.num_samples), 2, store.raw_size, seed=0))
        rng = np.random.default_rng(0)
        for spec in mods.specs:
            if spec.kind in ("image", "vector", "sequence"):
                store.ensure_tokens(spec, 2)
                store.write_tokens(spec, 0, rng.integers(0, min(spec.vocab_size, 4000),
                                                         (store.num_samples, 2, spec.num_tokens)))
        ds = FourMDataset([url], modalities=mods)
        for workers in (int(w) for w in args.workers.split(",")):
            sampler = FourMSampler(ds, seed=0)
            loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=workers,
                                                 collate_fn=FourMCollate(None, modalities=mods),
                                                 persistent_workers=False)
            it = iter(loader)
            next(it)  # start-up (worker spawn, store open) excluded
            t0, n = time.perf_counter(), 0
            for batch in it:
                n += batch["tensors"]["rgb"].shape[0]
            sampler.set_epoch(1)
            for batch in loader:
                n += batch["tensors"]["rgb"].shape[0]
            dt = time.perf_counter() - t0
            print(json.dumps({"bench": "loader", "workers": workers, "samples": n, "seconds": round(dt, 3),
                              "samples_per_s": round(n / dt, 1), "modalities": list(mods.names),
                              "note": "rgb pixels (crop+resize+normalise) + tokens of 2 crops",
                              **common}))


if __name__ == "__main__":
    main()
