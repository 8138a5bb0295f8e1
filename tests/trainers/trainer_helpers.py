"""Helpers of the trainer tests: a small fourm store built from real photos with weight-free token modalities.

(A uniquely named module, not conftest: test files import from it, and two conftest modules would clash.)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

GRID = 14
EOS = 3


def real_photos() -> list[np.ndarray]:
    """Real photos shipped by scikit-image, scikit-learn and matplotlib, as RGB uint8 arrays."""
    import skimage.data as sd
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    imgs = [getattr(sd, n)() for n in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                                          "immunohistochemistry", "retina", "colorwheel")]
    imgs += list(load_sample_images().images)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        imgs.append(np.asarray(Image.open(f).convert("RGB")))
    return [np.stack([i] * 3, -1) if i.ndim == 2 else i[..., :3] for i in imgs]


def _views(img: np.ndarray, size: int) -> list[np.ndarray]:
    """Four square views of a photo (centre, left/top, right/bottom, mirrored centre) resized to ``size``."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    boxes = [((h - s) // 2, (w - s) // 2), (0, 0), (h - s, w - s)]
    out = []
    for top, left in boxes:
        out.append(np.asarray(Image.fromarray(img[top:top + s, left:left + s]).resize((size, size), Image.BILINEAR)))
    out.append(out[0][:, ::-1].copy())
    return out


def weightfree_tokens(img: np.ndarray) -> dict[str, np.ndarray]:
    """Deterministic token ids computed from a photo by real weight-free algorithms:

    * ``canny_edge``: Canny edge density per 8×8 patch of a 112² view, 32 levels (ids < 8192);
    * ``tok_rgb``: mean colour per patch, 8 levels per channel (512 ids < 16384);
    * ``color_palette``: the 4 most frequent colours (4 levels per channel) as text ids 204.., then [EOS].
    """
    import cv2

    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(g, 80, 160) > 0
    p = img.shape[0] // GRID
    dens = edges.reshape(GRID, p, GRID, p).mean((1, 3))
    canny = np.minimum((dens * 32 * 3).astype(np.int64), 31).reshape(-1)
    mean = img.reshape(GRID, p, GRID, p, 3).mean((1, 3)) // 32
    rgb = (mean[..., 0] * 64 + mean[..., 1] * 8 + mean[..., 2]).astype(np.int64).reshape(-1)
    q = (img // 64).reshape(-1, 3)
    codes = q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2]
    top = np.argsort(-np.bincount(codes, minlength=64), kind="stable")[:4]
    pal = np.zeros(23, dtype=np.int64)
    pal[:4] = 204 + top
    pal[4] = EOS
    return {"canny_edge": canny, "tok_rgb": rgb, "color_palette": pal}


def build_store(url: str | Path, images: list[np.ndarray], names: tuple[str, ...] = ("canny_edge", "tok_rgb",
                                                                                     "color_palette")) -> str:
    from fourm_core.data import Store
    from fourm_registry import get_modalities

    ms = get_modalities()
    toks = [weightfree_tokens(i) for i in images]
    store = Store.create(str(url), len(images), samples_per_shard=8, raw_size=images[0].shape[0])
    store.ensure_crops(1, seed=0)
    s = images[0].shape[0]
    store.write_crops(0, np.tile(np.array([[[0, 0, s, s, 0]]], dtype=np.int32), (len(images), 1, 1)))
    for n in names:
        spec = ms[n]
        store.ensure_tokens(spec, 1)
        store.write_tokens(spec, 0, np.stack([t[n] for t in toks])[:, None])
    return str(url)


def base_config(out: Path, stores: dict[str, str], **over) -> dict:
    cfg = {
        "out_dir": str(out),
        "datasets": [{"path": stores["train"]}],
        "model": {"preset": "debug"},
        "masking": {"input_tokens": 24, "target_tokens": 24},
        "batch_size": 4,
        "max_steps": 6,
        "optimizer": {"lr": 2e-3},
        "schedule": {"warmup_tokens": 500},
        "seed": 3,
        "cpu": True,
    }
    cfg.update(over)
    return cfg
