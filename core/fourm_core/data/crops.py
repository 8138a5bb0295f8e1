"""Crop parameters shared by every modality of a sample, and image helpers for ingest and the loader.

Crop ``c`` of sample ``i`` is drawn from a generator seeded by ``(seed, i, c)``, so reruns, resumed runs and
runs split over any number of processes produce identical crops, and adding crops keeps the existing ones.
Crop 0 is the centre crop: the whole square raw image, not flipped. The others are random resized crops
(area scale and aspect ratio ranges as torchvision's ``RandomResizedCrop``) with a horizontal flip of
probability 0.5. Coordinates are raw rgb pixels: ``(top, left, height, width, flip)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps

DEFAULT_SCALE = (0.2, 1.0)
DEFAULT_RATIO = (3 / 4, 4 / 3)


def crop_params(indices: Iterable[int], num_crops: int, raw_size: int, *, seed: int = 0,
                scale: tuple[float, float] = DEFAULT_SCALE, ratio: tuple[float, float] = DEFAULT_RATIO,
                flip_prob: float = 0.5) -> np.ndarray:
    """Crop parameters ``(n, num_crops, 5)`` int32 for the given sample indices."""
    idx = [int(i) for i in indices]
    out = np.zeros((len(idx), num_crops, 5), dtype=np.int32)
    out[:, 0] = (0, 0, raw_size, raw_size, 0)
    area = float(raw_size * raw_size)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for row, i in enumerate(idx):
        for c in range(1, num_crops):
            rng = np.random.default_rng((int(seed), i, c))
            # ten attempts, as RandomResizedCrop; fall back to the whole image
            scales = rng.uniform(scale[0], scale[1], size=10)
            ratios = np.exp(rng.uniform(log_r[0], log_r[1], size=10))
            ws = np.round(np.sqrt(area * scales * ratios)).astype(int)
            hs = np.round(np.sqrt(area * scales / ratios)).astype(int)
            ok = np.flatnonzero((ws >= 1) & (hs >= 1) & (ws <= raw_size) & (hs <= raw_size))
            offsets = rng.random(2)
            flip = int(rng.random() < flip_prob)
            if ok.size:
                h, w = int(hs[ok[0]]), int(ws[ok[0]])
                top = int(offsets[0] * (raw_size - h + 1))
                left = int(offsets[1] * (raw_size - w + 1))
            else:
                h = w = raw_size
                top = left = 0
            out[row, c] = (top, left, h, w, flip)
    return out


def load_image(path: str, raw_size: int) -> np.ndarray:
    """Decode an image file as uint8 ``(raw_size, raw_size, 3)``.

    EXIF orientation is applied, the short side is resized to ``raw_size`` (bicubic, after JPEG draft-mode
    downscaling for speed) and the centre is cropped. Raises the decoder's exception on unreadable files.
    """
    with Image.open(path) as img:
        if img.format == "JPEG":
            # decode at a reduced scale that stays >= 2x the target, then resample precisely
            w, h = img.size
            s = min(w, h)
            if s > 2 * raw_size:
                img.draft("RGB", (max(1, w * 2 * raw_size // s), max(1, h * 2 * raw_size // s)))
        img = ImageOps.exif_transpose(img)
        img = img.convert("RGB")
        return resize_center_crop(img, raw_size)


def resize_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side of ``img`` to ``size`` and crop the centre square: uint8 ``(size, size, 3)``."""
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"image has empty size {img.size}")
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return np.ascontiguousarray(arr)
