"""Text serialization of SAM instances (4M-21's scheme), per query point.

Text grammar (whitespace-separated tokens of the shared vocabulary)::

    text     := group*
    group    := "point" v0=X v1=Y ( "none" | instance+ )
    instance := "polygon" v0=X0 v1=Y0 v2=X1 v3=Y1 mask{16}
    mask     := v0=C (code C in 0..511) | v1=C (code 512 + C)

Coordinates are normalised to the (cropped) image and binned to 1000 (``v0=0 .. v0=999``); a query point
lists every instance whose mask contains it. The 16 mask tokens are the ids of the mask tokenizer (a ViT
VQ-VAE with 1024 codes over the instance's mask cut to its box and resized to 64 × 64), written with the
reference's trick of reusing the coordinate tokens ``v0=``/``v1=`` (codes < 512 / ≥ 512) so that the shared
vocabulary needs only three words for this modality: ``point``, ``polygon``, ``none``.

Two raw forms are accepted by :meth:`SamInstanceSerializer.to_text`: the *stored* form (labeler output, see
:mod:`.masks`; query points are drawn and membership is read from the masks) and the *points* form that
:meth:`SamInstanceSerializer.from_text` returns::

    {"points": [{"xy": [x, y], "instances": [{"box": [x0, y0, x1, y1], "tokens": [16 ints]}, ...]}, ...]}

with coordinates as bin centres in [0, 1]. ``to_text(points form)`` is deterministic, so
``to_text(from_text(t)) == t`` for every valid ``t``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from fourm_core.plugin_kit.boxes import dequantize, quantize

from .masks import MODALITY, box_crops, check_raw, decode_instances

log = logging.getLogger(__name__)

BINS = 1000
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
    :param point_mode: ``"random"`` (uniform, a fresh draw per call from ``seed``) or ``"grid"``
        (``num_points`` must then be a square: a regular grid of cell centres).
    :param max_tokens: token budget (``max_length`` − 2 for ``[EOS]`` and a sentinel); query-point groups
        that do not fit are left out whole.
    :param strict: if False, :meth:`from_text` drops an incomplete trailing group (truncated model output)
        instead of raising.
    """

    def __init__(self, mask_tokenizer: Any = None, *, num_points: int = 7, point_mode: str = "random",
                 seed: int | None = None, max_tokens: int = 288, strict: bool = True,
                 tokenizer_dir: str | None = None):
        if point_mode not in ("random", "grid"):
            raise ValueError(f"{MODALITY}: point_mode must be 'random' or 'grid', got {point_mode!r}")
        if point_mode == "grid" and int(round(num_points ** 0.5)) ** 2 != num_points:
            raise ValueError(f"{MODALITY}: point_mode 'grid' needs a square num_points, got {num_points}")
        self.num_points = int(num_points)
        self.point_mode = point_mode
        self.rng = np.random.default_rng(seed)
        self.max_tokens = int(max_tokens)
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
    def query_points(self) -> np.ndarray:
        """(P, 2) xy in [0, 1)."""
        if self.point_mode == "grid":
            n = int(round(self.num_points ** 0.5))
            c = (np.arange(n) + 0.5) / n
            xx, yy = np.meshgrid(c, c)
            return np.stack([xx.ravel(), yy.ravel()], axis=1)
        return self.rng.random((self.num_points, 2))

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
        pts = self.query_points()
        # snap to bin centres so that the points form is exactly what the text holds
        pts = dequantize(quantize(pts, BINS), BINS)
        rows = np.clip((pts[:, 1] * h).astype(int), 0, h - 1)
        cols = np.clip((pts[:, 0] * w).astype(int), 0, w - 1)
        inside = masks[:, rows, cols] if len(inst) else np.zeros((0, len(pts)), bool)  # (N, P)
        qbox = dequantize(quantize(boxes, BINS), BINS)
        groups = []
        for p in range(len(pts)):
            members = np.flatnonzero(inside[:, p])
            groups.append({
                "xy": [float(pts[p, 0]), float(pts[p, 1])],
                "instances": [{"box": [float(v) for v in qbox[i]], "tokens": [int(t) for t in tokens[i]]} for i in members],
            })
        return {"points": groups}

    # -- text ---------------------------------------------------------------------------------------
    def to_text(self, raw: dict[str, Any]) -> str:
        """Stored sample or points form → text (groups that overflow ``max_tokens`` are left out)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{MODALITY}: expected a dict (stored sample or points form), got {type(raw).__name__}")
        points = raw if "points" in raw else self.to_points(raw)
        words: list[str] = []
        for g, group in enumerate(points["points"]):
            part = self._group_words(group, g)
            if len(words) + len(part) > self.max_tokens:
                log.debug("%s: query point %d (%d tokens) does not fit the %d-token budget; left out",
                          MODALITY, g, len(part), self.max_tokens)
                continue
            words.extend(part)
        return " ".join(words)

    def _group_words(self, group: dict[str, Any], g: int) -> list[str]:
        try:
            x, y = quantize(np.asarray(group["xy"], dtype=np.float64), BINS)
            instances = group["instances"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{MODALITY}: query point {g} must be {{'xy': [x, y], 'instances': [...]}}: {exc}") from exc
        words = ["point", _coord("v0", x), _coord("v1", y)]
        if not instances:
            words.append("none")
        for inst in instances:
            box = quantize(np.asarray(inst["box"], dtype=np.float64).reshape(4), BINS)
            toks = list(inst["tokens"])
            if len(toks) != MASK_TOKENS:
                raise ValueError(f"{MODALITY}: query point {g}: an instance needs {MASK_TOKENS} mask tokens, got {len(toks)}")
            words += ["polygon", *(_coord(f"v{k}", box[k]) for k in range(4)), *(mask_code_token(t) for t in toks)]
        return words

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
        x = _expect_coord(toks, i + 1, ("v0",))
        y = _expect_coord(toks, i + 2, ("v1",))
        i += 3
        group = {"xy": [float(dequantize(x[1], BINS)), float(dequantize(y[1], BINS))], "instances": []}
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
            group["instances"].append({"box": [float(v) for v in dequantize(np.array(box), BINS)], "tokens": codes})
            i += 5 + MASK_TOKENS
        return group, i


class _Truncated(ValueError):
    pass


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
