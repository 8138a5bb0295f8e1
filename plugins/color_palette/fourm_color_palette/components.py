"""Components of the ``color_palette`` modality.

Raw form (JSON): ``{"colors": [[R, G, B], ...]}`` with 1 ≤ k ≤ 7 colours, integer channels 0..255, ordered
by the share of pixels they cover (dominant colour first).

Serialization (4M-21's scheme, exact, no binning loss): ``v1=k`` followed by one ``v0=<value>`` token per
channel, colour after colour: ``v1=2 v0=255 v0=0 v0=0 v0=12 v0=40 v0=200``. Worst case 1 + 3·7 = 22 tokens.

The palette describes the whole image and does not follow crops or flips (as in 4M-21).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np

from fourm_core.plugin_kit.seqtext import SerializationError, TokenReader, value_token

log = logging.getLogger(__name__)
MODALITY = "color_palette"
MAX_COLORS = 7


def validate_palette(raw: Any) -> list[list[int]]:
    """The colours of a palette raw, checked; raises ``ValueError`` naming the modality otherwise."""
    if not isinstance(raw, dict) or "colors" not in raw:
        raise SerializationError(f"modality {MODALITY!r}: raw must be a dict {{'colors': [[R, G, B], ...]}}, got {raw!r:.80}")
    colors = raw["colors"]
    if not isinstance(colors, list) or not 1 <= len(colors) <= MAX_COLORS:
        raise SerializationError(f"modality {MODALITY!r}: 'colors' must hold 1..{MAX_COLORS} colours, got {colors!r:.80}")
    out = []
    for c in colors:
        if (not isinstance(c, (list, tuple)) or len(c) != 3
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)):
            raise SerializationError(f"modality {MODALITY!r}: colour {c!r} must be three integers 0..255")
        out.append([int(v) for v in c])
    return out


def from_sizes(sample: Any, rng: random.Random | None = None) -> dict[str, list[list[int]]]:
    """4M-21's stored palettes (``[{"1": [[R, G, B]], ..., "7": [7 colours]}]``: one palette per size) → the
    raw form, with the size drawn as 4M-21's training transform does (``rng.randint(1, 7)``; default the
    ``random`` module)."""
    try:
        by_size = sample[0]
        k = (rng or random).randint(1, MAX_COLORS)
        colors = by_size[str(k)]
    except (KeyError, IndexError, TypeError) as exc:
        raise SerializationError(f"modality {MODALITY!r}: a palette-per-size sample must be "
                                 f"[{{'1': [[R, G, B]], ..., '{MAX_COLORS}': [...]}}]: {exc!r}") from exc
    return {"colors": [[int(v) for v in c] for c in colors]}


class PaletteSerializer:
    """``to_text`` / ``from_text`` of colour palettes (see the module docstring for the layout)."""

    def to_text(self, raw: Any) -> str:
        colors = validate_palette(raw)
        tokens = [value_token(1, len(colors))]
        tokens += [value_token(0, v) for c in colors for v in c]
        return " ".join(tokens)

    def grammar(self):
        """The text's grammar for constrained decoding: ``v1=k`` (1..7), then exactly 3·k channels ``v0=0..255``."""
        from fourm_core.generation.grammar import Grammar, alt, repeat, seq, value

        return Grammar(alt(*(seq(value(1, k, k), repeat(value(0, 0, 255), 3 * k, 3 * k))
                             for k in range(1, MAX_COLORS + 1))))

    def from_text(self, text: str) -> dict[str, list[list[int]]]:
        r = TokenReader(text, MODALITY)
        _, k = r.value(axis=1)
        if not 1 <= k <= MAX_COLORS:
            raise SerializationError(f"modality {MODALITY!r}: palette size token 'v1={k}' must be 1..{MAX_COLORS}")
        colors = []
        for _ in range(k):
            channels = []
            for _ in range(3):
                pos = r.pos
                _, v = r.value(axis=0)
                if v > 255:
                    raise SerializationError(
                        f"modality {MODALITY!r}: cannot parse token 'v0={v}' at position {pos}: channel values are 0..255")
                channels.append(v)
            colors.append(channels)
        if not r.done():
            raise r.fail(f"the end of the palette after {k} colours")
        return {"colors": colors}


class PaletteLabeler:
    """Dominant colours by k-means in RGB (OpenCV, k-means++ init, fixed seed: deterministic).

    The image is first downsampled to ``work_size``² (area interpolation) for speed. When the image has
    fewer distinct colours than ``k``, the palette has as many colours as there are.

    ``levels`` (2..256, default 256: exact): each channel of each colour is rounded to the nearest of
    ``levels`` evenly spaced values from 0 to 255 (6 gives 0, 51, ..., 255: the 216 "web-safe" colours), so that
    a model sees ``levels`` distinct channel tokens instead of 256; colours that become equal are merged (their
    pixel shares added) and the order stays dominant first.
    """

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 64, *, k: int = 5,
                 work_size: int = 64, attempts: int = 3, seed: int = 0, levels: int = 256):
        if weights is not None:
            raise ValueError(f"modality {MODALITY!r}: the k-means palette labeler takes no weights (got {weights!r})")
        if not 1 <= k <= MAX_COLORS:
            raise ValueError(f"modality {MODALITY!r}: k must be 1..{MAX_COLORS}, got {k}")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 256:
            raise ValueError(f"modality {MODALITY!r}: levels must be an integer 2..256 (256: exact channels), "
                             f"got {levels!r}")
        self.k, self.work_size, self.attempts, self.seed = k, work_size, attempts, seed
        self.levels = levels
        self.batch_size = batch_size
        self.device = device

    def palette(self, image: np.ndarray) -> dict[str, list[list[int]]]:
        import cv2

        from fourm_core.plugin_kit.labelers import check_rgb_image

        img = check_rgb_image(image, MODALITY)
        if max(img.shape[:2]) > self.work_size:
            img = cv2.resize(img, (self.work_size, self.work_size), interpolation=cv2.INTER_AREA)
        pixels = img.reshape(-1, 3)
        packed = np.unique((pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2])
        unique = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
        k = min(self.k, len(unique))
        if k == len(unique):
            centers = unique.astype(np.float32)
            labels = np.argmin(((pixels[:, None, :].astype(np.float32) - centers[None]) ** 2).sum(-1), axis=1)
        else:
            cv2.setRNGSeed(self.seed)
            criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.5)
            _, labels, centers = cv2.kmeans(pixels.astype(np.float32), k, None, criteria, self.attempts,
                                            cv2.KMEANS_PP_CENTERS)
            labels = labels.reshape(-1)
        counts = np.bincount(labels, minlength=k)
        colors = np.clip(np.rint(centers), 0, 255).astype(int)
        if self.levels < 256:
            step = 255.0 / (self.levels - 1)
            colors = np.rint(np.rint(colors / step) * step).astype(int)
            merged, colors = np.unique(colors, axis=0, return_inverse=True)
            counts = np.bincount(colors.reshape(-1), weights=counts, minlength=len(merged))
            colors, k = merged, len(merged)
        order = np.lexsort((np.arange(k), -counts))  # most pixels first, ties by index
        order = order[counts[order] > 0]  # an empty cluster is no colour of the image
        return {"colors": [[int(v) for v in c] for c in colors[order]]}

    def __call__(self, inputs: dict[str, list[Any]]) -> list[dict[str, list[list[int]]]]:
        return [self.palette(img) for img in inputs["rgb"]]


class PaletteTransform:
    """Palettes describe the whole image: crops and flips leave them unchanged (as in 4M-21)."""

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             **_: Any) -> Any:
        validate_palette(raw)
        return {"colors": [list(c) for c in raw["colors"]]}


def visualize(raw: Any, *, width: int = 448, height: int = 64):
    """Equal-width swatches, one per colour, dominant colour on the left."""
    from PIL import Image

    colors = np.asarray(validate_palette(raw), dtype=np.uint8)
    idx = (np.arange(width) * len(colors)) // width
    strip = np.broadcast_to(colors[idx][None], (height, width, 3))
    return Image.fromarray(np.ascontiguousarray(strip), "RGB")
