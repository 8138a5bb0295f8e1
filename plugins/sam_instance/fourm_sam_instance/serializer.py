"""Text serialization of SAM instances (4M-21's scheme, token for token), per query point.

Text grammar (whitespace-separated tokens of the shared vocabulary)::

    text     := group*
    group    := "point" v0=Y v1=X ( "none" | instance+ )
    instance := "polygon" v0=X0 v1=Y0 v2=X1 v3=Y1 mask{16}
    mask     := v0=C (code C in 0..511) | v1=C (code 512 + C)

Coordinates are integer pixels of the (cropped) image at ``image_size`` (224): the query point with its
row first (``v0=y v1=x``), the box as ``x0 y0 x1 y1``. A query point lists every instance whose mask
contains it. The 16 mask tokens are the ids of the mask tokenizer (a ViT VQ-VAE with 1024 codes over the
instance's mask cut to its box and resized to 64 × 64), written with the reference's trick of reusing the
coordinate tokens ``v0=``/``v1=`` (codes < 512 / ≥ 512) so that the shared vocabulary needs only three
words for this modality: ``point``, ``polygon``, ``none``.

Two raw forms are accepted by :meth:`SamInstanceSerializer.to_text`: the *stored* form (labeler output, see
:mod:`.masks`; query points are drawn and membership is read from the masks) and the *points* form that
:meth:`SamInstanceSerializer.from_text` returns::

    {"points": [{"xy": [x, y], "instances": [{"box": [x0, y0, x1, y1], "tokens": [16 ints]}, ...]}, ...]}

with coordinates in [0, 1] as pixel / ``image_size``. ``to_text(points form)`` is deterministic, so
``to_text(from_text(t)) == t`` for every valid ``t``. Like 4M-21, every group is written (no budget by
default); the shared tokenizer cuts the ids at max_length, and :meth:`~SamInstanceSerializer.from_text`
drops the incomplete trailing group of such a text (``strict=True`` raises instead).
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np

from fourm_core.plugin_kit.seqtext import content_seed

from .masks import MODALITY, box_crops, check_raw, decode_instances

log = logging.getLogger(__name__)

BINS = 1000
#: the crop size whose pixels the coordinates count (4M-21: 224)
IMAGE_SIZE = 224
MASK_TOKENS = 16
MASK_CODES = 1024
SPECIAL_TOKENS = ("point", "polygon", "none")
ENV_MASK_TOKENIZER = "FOURM_SAM_MASK_TOKENIZER"
MASK_TOKENIZER_SUBDIR = "sam_instance_mask"


def _coord(prefix: str, value: int) -> str:
    return f"{prefix}={int(value)}"


def mask_code_token(code: int) -> str:
    """Mask code 0..1023 → ``v0=c`` (c < 512) or ``v1=c-512``."""
    code = int(code)
    if not 0 <= code < MASK_CODES:
        raise ValueError(f"{MODALITY}: mask token id {code} is outside 0..{MASK_CODES - 1}; the mask tokenizer must "
                         f"have at most {MASK_CODES} codes")
    return f"v0={code}" if code < 512 else f"v1={code - 512}"


class SamInstanceSerializer:
    """``to_text(raw) -> str`` / ``from_text(str) -> points form`` for ``sam_instance``.

    :param mask_tokenizer: a mask tokenizer (``encode((N, 1, 64, 64)) -> (N, 16)``) or the directory of one
        (``save_pretrained``); default: ``$FOURM_SAM_MASK_TOKENIZER``, else ``tokenizer_dir/sam_instance_mask``.
        Only needed for stored samples whose instances carry no ``tokens`` yet.
    :param num_points: query points per sample (the reference: 7, drawn at random).
    :param point_mode: ``"random"`` (uniform pixels drawn from ``seed`` and the sample's content: the same
        sample always gets the same points, whatever the call order) or ``"grid"``
        (``num_points`` must then be a square n²: 4M-21's grid, the n interior points of
        ``linspace(0, image_size, n + 2)`` per axis, x-major).
    :param image_size: the pixel size of the crop the coordinates count.
    :param shuffle: shuffle the query points, then each point's instances, with a ``random.Random`` seeded
        from ``seed`` and the sample (4M-21 does so with Python's ``random``; see :func:`shuffle_groups`).
    :param max_tokens: optional token budget; query-point groups that do not fit are left out whole
        (default ``None``: every group is written, as 4M-21).
    :param strict: if True, :meth:`from_text` raises on an incomplete trailing group instead of dropping
        it (a text cut at max_length).
    """

    def __init__(self, mask_tokenizer: Any = None, *, num_points: int = 7, point_mode: str = "random",
                 seed: int | None = None, max_tokens: int | None = None, strict: bool = False,
                 tokenizer_dir: str | None = None, image_size: int = IMAGE_SIZE, shuffle: bool = False):
        if point_mode not in ("random", "grid"):
            raise ValueError(f"{MODALITY}: point_mode must be 'random' or 'grid', got {point_mode!r}")
        if point_mode == "grid" and int(round(num_points ** 0.5)) ** 2 != num_points:
            raise ValueError(f"{MODALITY}: point_mode 'grid' needs a square num_points, got {num_points}")
        self.num_points = int(num_points)
        self.point_mode = point_mode
        self.seed = seed
        self.shuffle = bool(shuffle)
        self.image_size = int(image_size)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.strict = bool(strict)
        self._mask_tokenizer = mask_tokenizer
        self._tokenizer_dir = tokenizer_dir

    # -- the mask tokenizer ----------------------------------------------------------------------
    @property
    def mask_tokenizer(self) -> Any:
        tok = self._mask_tokenizer
        if tok is None:
            env = os.environ.get(ENV_MASK_TOKENIZER)
            if env:
                tok = env
            elif self._tokenizer_dir and os.path.isdir(os.path.join(self._tokenizer_dir, MASK_TOKENIZER_SUBDIR)):
                tok = os.path.join(self._tokenizer_dir, MASK_TOKENIZER_SUBDIR)
        if tok is None:
            raise ValueError(
                f"{MODALITY}: the instances carry no mask tokens and no mask tokenizer is configured. Train one "
                f"(python -c 'from fourm_sam_instance.components import train_mask_tokenizer; ...' or see the "
                f"plugin README), then pass mask_tokenizer=DIR or set {ENV_MASK_TOKENIZER}=DIR"
            )
        if isinstance(tok, (str, os.PathLike)):
            from fourm_core.tokenizers import load_tokenizer

            tok = load_tokenizer(tok).eval()
        if getattr(tok, "vocab_size", MASK_CODES) > MASK_CODES or getattr(tok, "num_tokens", MASK_TOKENS) != MASK_TOKENS:
            raise ValueError(f"{MODALITY}: the mask tokenizer must give {MASK_TOKENS} tokens of at most {MASK_CODES} "
                             f"codes, got {tok.num_tokens} tokens of {tok.vocab_size}")
        self._mask_tokenizer = tok
        return tok

    def mask_tokens(self, masks: np.ndarray, boxes_px: np.ndarray) -> np.ndarray:
        """(N, H, W) masks with pixel boxes → (N, 16) mask-token ids (one batched encoder call)."""
        import torch

        crops = torch.from_numpy(box_crops(masks, boxes_px))
        tok = self.mask_tokenizer
        with torch.no_grad():
            ids = tok.encode(crops.to(getattr(tok, "device", "cpu")))
        return ids.cpu().numpy().astype(np.int64)

    # -- raw → points form ------------------------------------------------------------------------
    def _sample_seed(self, raw: Any) -> int:
        """The draws of one sample come from ``seed`` and the sample's content, never from call order: the same
        sample always gives the same text (a resumed tokenize job writes what an uninterrupted one would)."""
        return (content_seed(raw) ^ (int(self.seed or 0) * 0x9E3779B97F4A7C15)) % (2**63)

    def query_points(self, raw: Any = None) -> np.ndarray:
        """(P, 2) integer pixels (x, y) of the ``image_size`` crop; random points are drawn from ``seed`` and
        the sample ``raw``."""
        size = self.image_size
        if self.point_mode == "grid":
            n = int(round(self.num_points ** 0.5))
            axis = np.linspace(0, size, n + 2)[1:-1].astype(np.int64)
            return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
        return np.random.default_rng(self._sample_seed(raw)).integers(0, size, (self.num_points, 2))

    def to_points(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A stored sample → the points form (query points drawn now; membership read from the masks)."""
        check_raw(raw)
        h, w = raw["size"]
        inst = raw["instances"]
        masks = decode_instances(raw)  # (N, H, W)
        boxes = np.array([i["box"] for i in inst], dtype=np.float64).reshape(-1, 4)
        if inst and all("tokens" in i for i in inst):
            tokens = np.array([i["tokens"] for i in inst], dtype=np.int64).reshape(len(inst), -1)
        elif inst:
            tokens = self.mask_tokens(masks, boxes * np.array([w, h, w, h]))
        else:
            tokens = np.zeros((0, MASK_TOKENS), dtype=np.int64)
        if tokens.shape[1] != MASK_TOKENS:
            raise ValueError(f"{MODALITY}: instances must carry {MASK_TOKENS} mask tokens, got {tokens.shape[1]}")
        size = self.image_size
        px = self.query_points(raw)
        rows = np.clip(px[:, 1] * h // size, 0, h - 1)
        cols = np.clip(px[:, 0] * w // size, 0, w - 1)
        inside = masks[:, rows, cols] if len(inst) else np.zeros((0, len(px)), bool)  # (N, P)
        qbox = np.floor(boxes * size + 1e-6) / size  # whole pixels of the crop, as the text holds them
        groups = []
        for p in range(len(px)):
            members = np.flatnonzero(inside[:, p])
            groups.append({
                "xy": [float(px[p, 0]) / size, float(px[p, 1]) / size],
                "instances": [{"box": [float(v) for v in qbox[i]], "tokens": [int(t) for t in tokens[i]]} for i in members],
            })
        points = {"points": groups}
        return shuffle_groups(points, random.Random(self._sample_seed(raw))) if self.shuffle else points

    # -- text ---------------------------------------------------------------------------------------
    def to_text(self, raw: dict[str, Any]) -> str:
        """Stored sample or points form → text (groups that overflow ``max_tokens`` are left out)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{MODALITY}: expected a dict (stored sample or points form), got {type(raw).__name__}")
        points = raw if "points" in raw else self.to_points(raw)
        words: list[str] = []
        for g, group in enumerate(points["points"]):
            part = self._group_words(group, g)
            if self.max_tokens is not None and len(words) + len(part) > self.max_tokens:
                log.debug("%s: query point %d (%d tokens) does not fit the %d-token budget; left out",
                          MODALITY, g, len(part), self.max_tokens)
                continue
            words.extend(part)
        return " ".join(words)

    def _group_words(self, group: dict[str, Any], g: int) -> list[str]:
        try:
            x, y = self._pixels(group["xy"], 2, f"query point {g}")
            instances = group["instances"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{MODALITY}: query point {g} must be {{'xy': [x, y], 'instances': [...]}}: {exc}") from exc
        words = ["point", _coord("v0", y), _coord("v1", x)]
        if not instances:
            words.append("none")
        for k, inst in enumerate(instances):
            if not isinstance(inst, dict) or "box" not in inst or "tokens" not in inst:
                raise ValueError(f"{MODALITY}: query point {g}: instance {k} must be {{'box': [x0, y0, x1, y1], "
                                 f"'tokens': [{MASK_TOKENS} mask ids]}}, got {inst!r:.80}")
            box = self._pixels(inst["box"], 4, f"query point {g}: box")
            toks = list(inst["tokens"])
            if len(toks) != MASK_TOKENS:
                raise ValueError(f"{MODALITY}: query point {g}: an instance needs {MASK_TOKENS} mask tokens, got {len(toks)}")
            words += ["polygon", *(_coord(f"v{k}", box[k]) for k in range(4)), *(mask_code_token(t) for t in toks)]
        return words

    def _pixels(self, values: Any, n: int, what: str) -> np.ndarray:
        """Normalised coordinates → integer pixels of the crop (``round(v · image_size)``), checked."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape != (n,) or not np.isfinite(v).all() or (v < 0).any() or (v > 1).any():
            raise ValueError(f"{MODALITY}: {what} must be {n} numbers in [0, 1] (pixel / {self.image_size}), "
                             f"got {values!r}")
        return np.rint(v * self.image_size).astype(np.int64)

    def grammar(self):
        """The text's grammar for constrained decoding: groups (at least one) ``point v0=y v1=x`` (pixels of
        the crop), each ``none`` or instances ``polygon``, four box pixels and 16 mask tokens ``v0=``/``v1=`` 0..511."""
        from fourm_core.generation.grammar import Grammar, alt, repeat, seq, value, words

        s = min(self.image_size, BINS - 1)
        mask = alt(value(0, 0, 511), value(1, 0, 511))
        instance = seq(words("polygon"), *(value(a, 0, s) for a in range(4)), repeat(mask, MASK_TOKENS, MASK_TOKENS))
        group = seq(words("point"), value(0, 0, s), value(1, 0, s), alt(words("none"), repeat(instance, 1)))
        return Grammar(repeat(group, 1))

    def from_text(self, text: str) -> dict[str, Any]:
        """Text → points form. Raises ``ValueError`` naming the bad token and its position (or, with
        ``strict=False``, drops an incomplete trailing group)."""
        if not isinstance(text, str):
            raise ValueError(f"{MODALITY}: from_text expects a str, got {type(text).__name__}")
        toks = text.split()
        groups: list[dict[str, Any]] = []
        i = 0
        while i < len(toks):
            start = i
            try:
                group, i = self._parse_group(toks, i)
            except _Truncated as exc:
                if self.strict:
                    raise ValueError(f"{MODALITY}: text ends inside a query-point group started at token {start}: {exc}") from None
                log.warning("%s: dropping an incomplete trailing group (tokens %d..): %s", MODALITY, start, exc)
                break
            groups.append(group)
        return {"points": groups}

    def _parse_group(self, toks: list[str], i: int) -> tuple[dict[str, Any], int]:
        _expect_word(toks, i, "point")
        y = _expect_coord(toks, i + 1, ("v0",))[1]
        x = _expect_coord(toks, i + 2, ("v1",))[1]
        i += 3
        size = self.image_size
        if max(x, y) > size:
            raise ValueError(f"{MODALITY}: token {i - 2} / {i - 1}: the point ({y}, {x}) lies outside the {size}-pixel crop")
        group = {"xy": [x / size, y / size], "instances": []}
        if i >= len(toks):
            raise _Truncated("expected 'none' or 'polygon' after the point")
        if toks[i] == "none":
            return group, i + 1
        if toks[i] != "polygon":
            raise ValueError(f"{MODALITY}: token {i} {toks[i]!r}: expected 'none' or 'polygon' after a point")
        while i < len(toks) and toks[i] == "polygon":
            box = [_expect_coord(toks, i + 1 + k, (f"v{k}",))[1] for k in range(4)]
            codes = []
            for k in range(MASK_TOKENS):
                prefix, value = _expect_coord(toks, i + 5 + k, ("v0", "v1"))
                if value >= 512:
                    raise ValueError(f"{MODALITY}: token {i + 5 + k} {toks[i + 5 + k]!r}: mask tokens are v0=/v1= 0..511")
                codes.append(value if prefix == "v0" else 512 + value)
            if max(box) > size:
                raise ValueError(f"{MODALITY}: token {i + 1}: the box {box} lies outside the {size}-pixel crop")
            group["instances"].append({"box": [v / size for v in box], "tokens": codes})
            i += 5 + MASK_TOKENS
        return group, i


class _Truncated(ValueError):
    pass


def shuffle_groups(points: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The points form with its query points shuffled, then each point's instances (``rng.shuffle``, in
    that order: 4M-21's draw sequence, so a ``random.Random`` seeded as 4M-21's ``random`` gives its text)."""
    groups = [{"xy": list(g["xy"]), "instances": list(g["instances"])} for g in points["points"]]
    rng.shuffle(groups)
    for g in groups:
        rng.shuffle(g["instances"])
    return {"points": groups}


def _expect_word(toks: list[str], i: int, word: str) -> None:
    if i >= len(toks):
        raise _Truncated(f"expected {word!r}")
    if toks[i] != word:
        raise ValueError(f"{MODALITY}: token {i} {toks[i]!r}: expected {word!r}")


def _expect_coord(toks: list[str], i: int, prefixes: tuple[str, ...]) -> tuple[str, int]:
    if i >= len(toks):
        raise _Truncated(f"expected a {'/'.join(p + '=N' for p in prefixes)} token")
    tok = toks[i]
    prefix, sep, value = tok.partition("=")
    if not sep or prefix not in prefixes or not (value.isascii() and value.isdigit()) or not 0 <= int(value) < BINS:
        raise ValueError(f"{MODALITY}: token {i} {tok!r}: expected {' or '.join(p + '=0..999' for p in prefixes)}")
    return prefix, int(value)
