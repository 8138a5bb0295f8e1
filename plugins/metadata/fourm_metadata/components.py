"""Components of the ``metadata`` modality.

Raw form (JSON): ``{"brightness": 112.3, "n_humans": 2, ...}``: any subset of :data:`KEYS`.

Serialization (4M-21's scheme, token for token): one chunk ``v1=<key id> v0=<bin>`` per key; keys use
4M-21's ids (``original_width`` = 0 … ``aesthetic_score`` = 20) and this plugin adds ``sharpness`` = 21 and
``edge_density`` = 22. Chunk order (``order=``): ``"seeded"`` (default) shuffles with a seed taken from the
binned content, so the same raw always gives the same text (and ``to_text(from_text(t)) == t``);
``"random"`` shuffles the raw's key order with ``random.shuffle`` of ``rng`` (a ``random.Random``; default
the ``random`` module, as 4M's training transform); ``"given"`` keeps the raw's key order. All chunks are
written (``max_chunks=None``); the shared tokenizer cuts the ids + ``[EOS]`` to max_length 40, which keeps
the first 20 whole chunks of a longer text, as 4M's chunked masking does.

Binning per key (values outside the range are clipped first):

=======================================================  ==========================================
``original_width``, ``original_height``                    ``value // 32`` (parsed back: bin·32 + 16)
``caption_n_*``, ``n_*``, ``*_diversity``                  the integer itself, 0..999 (exact)
``watermark_score``                                        bins split at 0.5 → parsed 0.25 / 0.75
``aesthetic_score``                                        bins split at 4.5, 5.5 → parsed 4 / 5 / 6
float keys in :data:`FLOAT_BINS` ``(vmin, vmax, n)``       ``int((v - vmin) / (vmax - vmin) · (n - 1))``:
                                                          n bins, the last one only for ``v = vmax``;
                                                          parsed back to the step's centre (``vmax``
                                                          for the last bin)
=======================================================  ==========================================

Statistics (computed on the raw rgb, 256² by default): brightness = mean grey level (0..255); contrast =
std of grey (0..127); saturation = mean HSV saturation (0..255); colorfulness = Hasler & Süsstrunk
(2003) M3; entropy = Shannon entropy of the 256-bin grey histogram (bits); sharpness = log10(1 + variance
of the grey Laplacian); edge_density = fraction of Canny(100, 200) edge pixels.
Counts from other modalities when the labeler receives them (optional inputs, not ``requires``):
``n_humans`` (human_pose persons), ``n_sam_instances`` (sam_instance instances), ``semantic_diversity``
(distinct semseg classes), ``n_coco_instances`` / ``coco_instance_diversity`` (det boxes with score ≥ 0.6
and their distinct classes), ``caption_n_chars`` / ``_words`` / ``_sentences`` (caption).
"""

from __future__ import annotations

import logging
import math
import random
import re
from typing import Any

import numpy as np

from fourm_core.plugin_kit.seqtext import SerializationError, TokenReader, content_seed, value_token

log = logging.getLogger(__name__)
MODALITY = "metadata"
ORDERS = ("seeded", "random", "given")

KEYS: dict[str, int] = {
    "original_width": 0, "original_height": 1, "caption_n_chars": 2, "caption_n_words": 3,
    "caption_n_sentences": 4, "n_humans": 5, "n_sam_instances": 6, "n_coco_instances": 7,
    "coco_instance_diversity": 8, "colorfulness": 9, "brightness": 10, "contrast": 11, "saturation": 12,
    "entropy": 13, "walkability": 14, "objectness": 15, "semantic_diversity": 16, "geometric_complexity": 17,
    "occlusion_score": 18, "watermark_score": 19, "aesthetic_score": 20, "sharpness": 21, "edge_density": 22,
}
ID_TO_KEY = {v: k for k, v in KEYS.items()}
IMAGE_DIM_KEYS = ("original_width", "original_height")
IMAGE_DIM_BIN = 32
INT_KEYS = ("caption_n_chars", "caption_n_words", "caption_n_sentences", "n_humans", "n_sam_instances",
            "n_coco_instances", "coco_instance_diversity", "semantic_diversity")
#: key → bin boundaries (values below the first boundary are bin 0) and the value each bin parses back to
MANUAL_BINS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "watermark_score": ((0.5,), (0.25, 0.75)),
    "aesthetic_score": ((4.5, 5.5), (4.0, 5.0, 6.0)),
}
FLOAT_BINS: dict[str, tuple[float, float, int]] = {
    "colorfulness": (0.0, 150.0, 50), "brightness": (0.0, 255.0, 50), "contrast": (0.0, 127.0, 50),
    "saturation": (0.0, 255.0, 50), "entropy": (0.0, 10.0, 50), "walkability": (0.0, 1.0, 50),
    "objectness": (0.0, 1.0, 50), "geometric_complexity": (0.0, 0.75, 50), "occlusion_score": (0.0, 0.25, 50),
    "sharpness": (0.0, 5.0, 50), "edge_density": (0.0, 0.5, 50),
}
VALUE_MAX = 999


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise SerializationError(f"modality {MODALITY!r}: value of {key!r} must be a finite number, got {value!r}")
    return float(value)


def to_bin(key: str, value: Any) -> int:
    """The ``v0=`` bin of ``value`` for ``key`` (see the module docstring)."""
    if key not in KEYS:
        raise SerializationError(f"modality {MODALITY!r}: unknown metadata key {key!r}; known keys: {', '.join(KEYS)}")
    v = _number(key, value)
    if key in IMAGE_DIM_KEYS:
        return int(min(max(v // IMAGE_DIM_BIN, 0), VALUE_MAX))
    if key in INT_KEYS:
        return int(min(max(round(v), 0), VALUE_MAX))
    if key in MANUAL_BINS:
        return int(sum(v >= b for b in MANUAL_BINS[key][0]))
    vmin, vmax, n = FLOAT_BINS[key]
    return int((min(max(v, vmin), vmax) - vmin) / (vmax - vmin) * (n - 1))


def num_bins(key: str) -> int:
    if key in IMAGE_DIM_KEYS or key in INT_KEYS:
        return VALUE_MAX + 1
    if key in MANUAL_BINS:
        return len(MANUAL_BINS[key][1])
    return FLOAT_BINS[key][2]


def from_bin(key: str, b: int) -> float | int:
    """The value a bin parses back to (ints for integer keys, bin centres for float keys)."""
    if key in IMAGE_DIM_KEYS:
        return b * IMAGE_DIM_BIN + IMAGE_DIM_BIN // 2
    if key in INT_KEYS:
        return b
    if key in MANUAL_BINS:
        return MANUAL_BINS[key][1][b]
    vmin, vmax, n = FLOAT_BINS[key]
    return min(vmax, vmin + (b + 0.5) * (vmax - vmin) / (n - 1))


class MetadataSerializer:
    """``{key: value}`` ↔ ``v1=<key id> v0=<bin>`` chunks (see the module docstring)."""

    def __init__(self, max_chunks: int | None = None, order: str = "seeded", rng: random.Random | None = None):
        if order not in ORDERS:
            raise ValueError(f"modality {MODALITY!r}: order must be one of {', '.join(ORDERS)}, got {order!r}")
        self.max_chunks, self.order, self.rng = max_chunks, order, rng

    def to_chunks(self, raw: Any) -> list[str]:
        """One ``v1=<key id> v0=<bin>`` string per key, in the serializer's order (the unit of chunked masking)."""
        if not isinstance(raw, dict):
            raise SerializationError(f"modality {MODALITY!r}: raw must be a dict of statistics, got {type(raw).__name__}")
        binned = {k: (KEYS.get(k, -1), to_bin(k, v)) for k, v in raw.items()}
        keys = list(binned)
        if self.order == "seeded":
            keys.sort(key=lambda k: binned[k])
            keys = [keys[i] for i in np.random.default_rng(content_seed(sorted(binned.values()))).permutation(len(keys))]
        elif self.order == "random":
            (self.rng or random).shuffle(keys)
        if self.max_chunks is not None:
            keys = keys[: self.max_chunks]
        return [f"{value_token(1, binned[k][0])} {value_token(0, binned[k][1])}" for k in keys]

    def to_text(self, raw: Any) -> str:
        return " ".join(self.to_chunks(raw))

    def grammar(self):
        """The text's grammar for constrained decoding: one or more ``v1=<key id> v0=<bin>`` chunks (an image
        always has statistics), each key at most once, each bin within its key's bins."""
        from fourm_core.generation.grammar import Grammar, alt, repeat, seq, value

        chunk = alt(*(seq(value(1, i, i), value(0, 0, num_bins(k) - 1)) for k, i in KEYS.items()))
        return Grammar(repeat(chunk, 1), once=value(1, min(ID_TO_KEY), max(ID_TO_KEY)))

    def from_text(self, text: str) -> dict[str, float | int]:
        r = TokenReader(text, MODALITY)
        out: dict[str, float | int] = {}
        while not r.done():
            pos = r.pos
            _, kid = r.value(axis=1)
            key = ID_TO_KEY.get(kid)
            if key is None:
                raise SerializationError(f"modality {MODALITY!r}: cannot parse token 'v1={kid}' at position {pos}: "
                                         f"no metadata key has id {kid} (ids 0..{max(ID_TO_KEY)})")
            if key in out:
                raise SerializationError(f"modality {MODALITY!r}: key {key!r} ('v1={kid}', position {pos}) appears twice")
            pos = r.pos
            _, b = r.value(axis=0)
            if b >= num_bins(key):
                raise SerializationError(f"modality {MODALITY!r}: cannot parse token 'v0={b}' at position {pos}: "
                                         f"{key!r} has bins 0..{num_bins(key) - 1}")
            out[key] = from_bin(key, b)
        return out


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, saturation, colourfulness, entropy, sharpness, edge density of a uint8 RGB image."""
    import cv2

    from fourm_core.plugin_kit.labelers import check_rgb_image

    img = check_rgb_image(image, MODALITY)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g = grey.astype(np.float64)
    rgb = img.astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colorfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    hist = np.bincount(grey.reshape(-1), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum())
    lap = cv2.Laplacian(grey, cv2.CV_64F)
    edges = cv2.Canny(grey, 100, 200)
    sat = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1]
    stats = {
        "brightness": g.mean(), "contrast": g.std(), "saturation": float(sat.mean()), "colorfulness": colorfulness,
        "entropy": entropy, "sharpness": math.log10(1.0 + lap.var()), "edge_density": float((edges > 0).mean()),
    }
    return {k: round(float(v), 4) for k, v in stats.items()}


def _count_instances(raw: Any) -> int | None:
    """Number of instances of a sam_instance raw (a list, or a dict holding a list under a usual key)."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        for key in ("instances", "masks", "boxes", "polygons", "bbox"):
            if key in raw:
                return len(raw[key])
        return None
    if isinstance(raw, (list, tuple)) or hasattr(raw, "__len__"):
        return len(raw)
    return None


class MetadataLabeler:
    """Image statistics of ``rgb`` plus counts from other modalities present in the inputs.

    ``optional_inputs`` names the modalities the label job may pass when a store has them; none is required.
    """

    optional_inputs = ("caption", "det", "human_pose", "sam_instance", "semseg")

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 64, *,
                 det_threshold: float = 0.6, semseg_ignore: tuple[int, ...] = (255,)):
        if weights is not None:
            raise ValueError(f"modality {MODALITY!r}: the metadata labeler takes no weights (got {weights!r})")
        self.batch_size, self.device = batch_size, device
        self.det_threshold, self.semseg_ignore = det_threshold, tuple(semseg_ignore)

    def counts(self, **raws: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        cap = raws.get("caption")
        if isinstance(cap, str):
            out["caption_n_chars"] = len(cap)
            out["caption_n_words"] = len(cap.split())
            out["caption_n_sentences"] = len([s for s in re.split(r"[.!?]+", cap) if s.strip()])
        pose = raws.get("human_pose")
        if isinstance(pose, dict) and "persons" in pose:
            out["n_humans"] = len(pose["persons"])
        n = _count_instances(raws.get("sam_instance"))
        if n is not None:
            out["n_sam_instances"] = n
        det = raws.get("det")
        if isinstance(det, dict) and "classes" in det:
            kept = [c for c, s in zip(det["classes"], det.get("scores", [1.0] * len(det["classes"])))
                    if s >= self.det_threshold]
            out["n_coco_instances"] = len(kept)
            out["coco_instance_diversity"] = len(set(kept))
        seg = raws.get("semseg")
        if seg is not None:
            classes = np.unique(np.asarray(seg))
            out["semantic_diversity"] = int(sum(int(c) not in self.semseg_ignore for c in classes))
        return out

    def __call__(self, inputs: dict[str, list[Any]]) -> list[dict[str, float | int]]:
        images = inputs["rgb"]
        for name, values in inputs.items():
            if len(values) != len(images):
                raise ValueError(f"modality {MODALITY!r}: input {name!r} has {len(values)} samples, rgb has {len(images)}")
        out = []
        for i, img in enumerate(images):
            raw: dict[str, float | int] = dict(image_statistics(img))
            raw.update(self.counts(**{k: v[i] for k, v in inputs.items() if k in self.optional_inputs}))
            out.append(raw)
        return out


class MetadataTransform:
    """Metadata describes the whole image: crops and flips leave it unchanged (as in 4M-21)."""

    def crop(self, raw: Any, box: tuple[int, int, int, int], flip: bool = False, size: tuple[int, int] | None = None,
             **_: Any) -> Any:
        if not isinstance(raw, dict):
            raise SerializationError(f"modality {MODALITY!r}: raw must be a dict of statistics, got {type(raw).__name__}")
        return dict(raw)


def visualize(raw: Any, *, width: int = 320):
    """The statistics as a text table (key: value), one line each."""
    from PIL import Image, ImageDraw

    if not isinstance(raw, dict):
        raise SerializationError(f"modality {MODALITY!r}: raw must be a dict of statistics, got {type(raw).__name__}")
    lines = [f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in sorted(raw.items())] or ["(no metadata)"]
    img = Image.new("RGB", (width, 14 * len(lines) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 14 * i), line, fill=(0, 0, 0))
    return img
