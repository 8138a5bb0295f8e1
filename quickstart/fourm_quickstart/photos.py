"""Real photos shipped by installed packages, and the random crops the quickstart trains and evaluates on."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .config import QuickstartError

log = logging.getLogger(__name__)


def _as_rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return np.ascontiguousarray(a[..., :3])


def load_photos() -> dict[str, np.ndarray]:
    """Real photos shipped by installed packages, as RGB uint8 arrays (grey ones replicated to 3 channels).

    scikit-image (CC0 / public domain), scikit-learn's sample images (CC-BY 2.0), matplotlib's Grace Hopper
    (public domain). Photos a package version lacks are skipped.
    """
    import skimage.data as sd

    photos: dict[str, np.ndarray] = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "colorwheel", "coins", "camera", "horse", "brick", "grass", "gravel", "moon"):
        fn = getattr(sd, name, None)
        if fn is None:
            continue
        try:
            photos[name] = _as_rgb(fn())
        except Exception as exc:  # noqa: BLE001 - a missing data file must not stop the quickstart
            log.warning("quickstart: skipping skimage photo %r (%s)", name, exc)
    try:
        left, right, _ = sd.stereo_motorcycle()
        photos["motorcycle"] = _as_rgb(left)
    except Exception as exc:  # noqa: BLE001
        log.warning("quickstart: skipping skimage stereo_motorcycle (%s)", exc)
    try:
        from sklearn.datasets import load_sample_images

        for fname, img in zip(load_sample_images().filenames, load_sample_images().images):
            photos[Path(fname).stem] = _as_rgb(img)
    except Exception as exc:  # noqa: BLE001
        log.warning("quickstart: skipping scikit-learn sample images (%s)", exc)
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            photos["grace_hopper"] = _as_rgb(np.asarray(Image.open(f).convert("RGB")))
    except Exception as exc:  # noqa: BLE001
        log.warning("quickstart: skipping matplotlib's grace_hopper.jpg (%s)", exc)
    if len(photos) < 4:
        raise QuickstartError(f"quickstart: only {len(photos)} sample photos found; install scikit-image, "
                              f"scikit-learn and matplotlib (pip install scikit-image scikit-learn matplotlib)")
    return photos


def random_crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator,
                 scale: tuple[float, float] = (0.25, 1.0)) -> list[np.ndarray]:
    """``n`` random square crops (side a random fraction of the short side, area in ``scale``), randomly
    mirrored, resized to ``size`` × ``size``."""
    from PIL import Image

    h, w = photo.shape[:2]
    short = min(h, w)
    out = []
    for _ in range(n):
        side = max(16, int(round(short * math.sqrt(rng.uniform(*scale)))))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = photo[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BICUBIC)))
    return out


def centre_and_random_crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The centre square first, then ``n - 1`` random crops of at least half the short side."""
    h, w = photo.shape[:2]
    s = min(h, w)
    from PIL import Image

    centre = photo[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    first = [np.asarray(Image.fromarray(np.ascontiguousarray(centre)).resize((size, size), Image.BICUBIC))]
    return first + (random_crops(photo, n - 1, size, rng, scale=(0.3, 0.8)) if n > 1 else [])


#: RGB → YIQ (NTSC): Y is the luma, (I, Q) the chroma plane that :func:`recolor` rotates and scales
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)


def recolor(crops: list[np.ndarray], rng: np.random.Generator, *, saturation: tuple[float, float] = (0.5, 1.6),
            tint: float = 40.0) -> list[np.ndarray]:
    """Each RGB crop in a random colour scheme: its channels permuted, its chroma rotated by a random hue angle
    and scaled by a random saturation gain, plus a random tint (a constant chroma offset, which colours grey
    photos too). The chroma operations keep the luma (up to clipping to 0..255); the permutation changes it a
    little (its weights differ per channel). A dozen photos then show colours all over the gamut, so that a
    model must read colours off the pixels rather than recognise which photo a crop comes from."""
    out = []
    for c in crops:
        img = c[..., rng.permutation(3)].astype(np.float64)
        yiq = img @ _YIQ.T
        a, g = rng.uniform(0.0, 2 * np.pi), rng.uniform(*saturation)
        rot = g * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        yiq[..., 1:] = yiq[..., 1:] @ rot.T + rng.uniform(-tint, tint, size=2)
        out.append(np.clip(np.rint(yiq @ _YIQ_INV.T), 0, 255).astype(np.uint8))
    return out
