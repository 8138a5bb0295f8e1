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
from typing import BinaryIO

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


#: Images with more pixels than this are skipped before they are decoded (8192 x 8192).
MAX_IMAGE_PIXELS = 8192 * 8192
#: Images whose long side exceeds this many times the short side are skipped (the centre crop would keep
#: almost nothing of them, and resizing the short side up would allocate a huge image).
MAX_ASPECT_RATIO = 32


class ImageRejected(ValueError):
    """An image ingest refuses before decoding it (too many pixels, too elongated)."""


def check_image_size(width: int, height: int) -> None:
    """Raise :class:`ImageRejected` for images :func:`load_image` will not decode (sizes from the header)."""
    if width < 1 or height < 1:
        raise ImageRejected(f"image has an empty size {width}x{height}")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageRejected(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels "
                            f"(MAX_IMAGE_PIXELS); downscale it first")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRejected(f"image of {width}x{height} pixels is more elongated than {MAX_ASPECT_RATIO}:1 "
                            f"(MAX_ASPECT_RATIO); its centre square would keep almost nothing of it")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (the conversion ``fourm ingest`` documents):

    * 16/32-bit grey (``I;16*``, ``I``): values are read as 16-bit (0..65535) and scaled to 0..255 (v / 257,
      rounded; ``I`` values are clipped to 0..65535 first), then replicated to three channels;
    * float grey (``F``): clipped to 0..1 and scaled to 0..255;
    * transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour, premultiplied modes): composited
      over a white background;
    * palette (``P``), ``1``, ``L``, ``CMYK`` (Pillow's conversion, no ICC colour management), ``YCbCr``,
      ``LAB``, ``HSV``: Pillow's ``convert("RGB")``.
    """
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img)
        if mode == "F":
            grey = np.round(np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255.0)
        else:
            grey = np.round(np.clip(a.astype(np.float64), 0, 65535) / 257.0)
        g = grey.astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(np.stack([g, g, g], axis=-1)), "RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if mode == "RGB" else img.convert("RGB")


def load_image(path: str | BinaryIO, raw_size: int) -> np.ndarray:
    """Decode an image file (a path or a binary file object) as uint8 ``(raw_size, raw_size, 3)``.

    The size is checked from the header before decoding (:func:`check_image_size`). EXIF orientation is
    applied, the mode converted by :func:`to_rgb`, the short side resized to ``raw_size`` (bicubic, after JPEG
    draft-mode downscaling for speed) and the centre cropped. Raises the decoder's exception on unreadable
    files, :class:`ImageRejected` on refused sizes.
    """
    return load_image_sized(path, raw_size)[0]


def load_image_sized(path: str | BinaryIO, raw_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`load_image`, and the image's original ``(height, width)`` after its EXIF orientation (the size
    pixel-aligned labels of the image must have)."""
    with Image.open(path) as img:
        check_image_size(*img.size)
        w, h = img.size
        if img.format == "JPEG":
            # decode at a reduced scale that stays >= 2x the target, then resample precisely
            s = min(w, h)
            if s > 2 * raw_size:
                img.draft("RGB", (max(1, w * 2 * raw_size // s), max(1, h * 2 * raw_size // s)))
        img = ImageOps.exif_transpose(img)
        if img.size[0] != img.size[1] and (img.size[0] > img.size[1]) != (w > h):  # EXIF rotated by 90 degrees
            w, h = h, w
        return resize_center_crop(to_rgb(img), raw_size), (h, w)


def centre_crop_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """``(resized height, resized width, top, left)`` of :func:`resize_center_crop`: the short side is resized
    to ``size`` (the other rounded, at least ``size``), then the ``size`` square at ``(top, left)`` is kept."""
    s = size / min(width, height)
    nw, nh = max(size, round(width * s)), max(size, round(height * s))
    return nh, nw, (nh - size) // 2, (nw - size) // 2


def resize_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side of ``img`` to ``size`` and crop the centre square: uint8 ``(size, size, 3)``."""
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"image has empty size {img.size}")
    nh, nw, top, left = centre_crop_geometry(w, h, size)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return np.ascontiguousarray(arr)
