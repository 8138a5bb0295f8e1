"""Throughput of the data pipeline on real photos: ingest, weight-free labeling, the training loader.

Prints one JSON line per measurement. Uses the installed plugins canny_edge, color_palette and metadata
(weight-free labelers) and the rgb pixels modality; the photos are the sample images shipped by
scikit-image / scikit-learn / matplotlib, repeated to ``--images``.

    OMP_NUM_THREADS=1 python bench/bench_data.py --images 64 --raw-size 256 --workers 0,2

The loader is measured on the same store in several places (``--stores``): ``local`` (a directory),
``memory`` (``memory://``, fsspec's in-process filesystem: the fsspec/zarr request path without I/O cost) and
``latency`` (the same in-memory bytes behind an fsspec filesystem that sleeps ``--latency-ms`` per request,
like an object store's round trip), each with the prefetching reader of remote stores on and off
(``fourm_core.data.prefetch``; local paths never use it). ``--only-loader`` skips the ingest and labeling
lines.
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
    ap.add_argument("--stores", default="local,memory,latency", help="where the loader reads the store from")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="per-request delay of the 'latency' store")
    ap.add_argument("--epochs", type=int, default=2, help="loader epochs timed per measurement")
    ap.add_argument("--only-loader", action="store_true", help="skip the ingest and labeling measurements")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from fourm_core.data import FourMDataset, ingest, label
    from fourm_registry import get_modalities

    common = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "raw_size": args.raw_size}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        src.mkdir()
        _photos(src, args.images)
        url = str(Path(tmp) / "bench.zarr")
        rep = ingest(src, url, samples_per_shard=args.samples_per_shard, raw_size=args.raw_size, progress=False)
        if not args.only_loader:
            print(json.dumps({"bench": "ingest", "images": rep.num_samples, "seconds": round(rep.seconds, 3),
                              "images_per_s": round(rep.num_samples / rep.seconds, 1), **common}))
        for name in [m for m in args.labelers.split(",") if m]:
            r = label(url, [name], progress=False)[name]
            if not args.only_loader:
                print(json.dumps({"bench": "label", "modality": name, "images": r.samples,
                                  "seconds": round(r.seconds, 3), "images_per_s": round(r.samples / r.seconds, 1),
                                  **common}))
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
        for where in [w for w in args.stores.split(",") if w]:
            store_url = _place(url, where, args.latency_ms)
            for prefetch in ((None,) if where == "local" else (False, True)):
                opts = None if prefetch is None else {"fourm_prefetch": prefetch}
                ds = FourMDataset([store_url], modalities=mods, storage_options=opts)
                for workers in (int(w) for w in args.workers.split(",")):
                    n, dt = _time_loader(ds, mods, args.batch_size, workers, args.epochs)
                    print(json.dumps({
                        "bench": "loader", "store": where, "prefetch": prefetch, "workers": workers, "samples": n,
                        "seconds": round(dt, 3), "samples_per_s": round(n / dt, 1), "modalities": list(mods.names),
                        "latency_ms": args.latency_ms if where == "latency" else None,
                        "note": "rgb pixels (crop+resize+normalise) + tokens of 2 crops", **common}))


class _LatencyFS(__import__("fsspec.implementations.memory", fromlist=["MemoryFileSystem"]).MemoryFileSystem):
    """fsspec's in-memory filesystem with a fixed delay per read request (an object store's round trip)."""

    protocol = "latencymem"
    latency_s = 0.02
    # its own file table: the same bytes as memory:// would be shared, so copy them in explicitly
    store: dict = {}
    pseudo_dirs = [""]

    @classmethod
    def _strip_protocol(cls, path):
        if path.startswith("latencymem://"):
            path = path[len("latencymem://"):]
        return super()._strip_protocol(path)

    def cat_file(self, path, start=None, end=None, **kwargs):
        time.sleep(self.latency_s)
        return super().cat_file(path, start=start, end=end, **kwargs)


def _place(url: str, where: str, latency_ms: float) -> str:
    """The store at ``url`` copied to ``where`` (local: as is); returns the URL to read it from."""
    import fsspec

    if where == "local":
        return url
    if where not in ("memory", "latency"):
        raise SystemExit(f"--stores: unknown place {where!r} (local, memory, latency)")
    proto = "memory" if where == "memory" else "latencymem"
    if where == "latency":
        fsspec.register_implementation("latencymem", _LatencyFS, clobber=True)
        _LatencyFS.latency_s = latency_ms / 1000
    fs = fsspec.filesystem(proto)
    root = f"/bench-{where}/store.zarr"
    local = fsspec.filesystem("file")
    for path in local.find(url):
        fs.pipe_file(root + path[len(url):], local.cat_file(path))
    return f"{proto}://{root}"


def _time_loader(ds, mods, batch_size: int, workers: int, epochs: int) -> tuple[int, float]:
    """Samples and seconds of ``epochs`` epochs of a DataLoader over ``ds`` (its first batch excluded:
    worker start-up and store opening)."""
    import torch

    from fourm_core.data import FourMCollate, FourMSampler

    sampler = FourMSampler(ds, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         collate_fn=FourMCollate(None, modalities=mods), persistent_workers=False)
    it = iter(loader)
    next(it)
    t0, n = time.perf_counter(), 0
    for batch in it:
        n += batch["tensors"]["rgb"].shape[0]
    for epoch in range(1, epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            n += batch["tensors"]["rgb"].shape[0]
    return n, time.perf_counter() - t0


if __name__ == "__main__":
    main()
