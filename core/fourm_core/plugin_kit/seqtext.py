"""Helpers shared by the text serializers of ``sequence`` modalities (det, poses, palettes, metadata, ...).

The shared text vocabulary has *value tokens* ``v0=0 .. v0=999``, ``v1=..``, ``v2=..``, ``v3=..`` as whole
tokens (the base layout of :mod:`fourm_core.tokenizers`). Serializers build strings of whitespace-separated
tokens with :func:`value_token` and parse them back with :func:`parse_value_token`; every parse error is a
:class:`SerializationError` (a ``ValueError``) naming the modality, the offending token and its position.

4M's own layouts bin box coordinates with :func:`round_coords` (``round(v · 999)``) and write class names as
:func:`class_words`; :func:`span_mask` / :func:`merge_spans` are 4M's sentinel span masking of one id list
and its inverse.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

#: number of values each ``vK=`` axis has (``vK=0`` .. ``vK=999``)
VALUE_BINS = 1000
#: the value-token axes of the base vocabulary
VALUE_AXES = 4
_VALUE_RE = re.compile(r"^v(\d+)=(\d+)$")


class SerializationError(ValueError):
    """A string could not be parsed back into a modality's raw data (or raw data could not be serialized)."""


class TruncatedTextError(SerializationError):
    """The text ended in the middle of an item (e.g. cut at ``max_length``); parsers of item lists may drop the
    incomplete last item instead of failing."""


def value_token(axis: int, value: int) -> str:
    """The base-vocabulary token ``v{axis}={value}``; raises if the value does not fit."""
    if not 0 <= axis < VALUE_AXES or not 0 <= int(value) < VALUE_BINS:
        raise SerializationError(f"value token v{axis}={value} is outside v0..v{VALUE_AXES - 1} = 0..{VALUE_BINS - 1}")
    return f"v{axis}={int(value)}"


def parse_value_token(token: str) -> tuple[int, int] | None:
    """``"v2=17"`` → ``(2, 17)``; ``None`` when ``token`` is not a value token at all.

    A token that looks like a value token but is out of range (``v7=3``, ``v0=1000``) raises
    :class:`SerializationError` (the caller adds the modality name).
    """
    m = _VALUE_RE.match(token)
    if m is None:
        return None
    axis, value = int(m.group(1)), int(m.group(2))
    if axis >= VALUE_AXES or value >= VALUE_BINS:
        raise SerializationError(f"value token {token!r} is outside v0..v{VALUE_AXES - 1} = 0..{VALUE_BINS - 1}")
    return axis, value


def parse_error(modality: str, token: str, position: int, expected: str) -> SerializationError:
    """A uniform parse error: names the modality, the bad token, where it is and what was expected."""
    return SerializationError(
        f"modality {modality!r}: cannot parse token {token!r} at position {position}: expected {expected}"
    )


class TokenReader:
    """Sequential reader over a serialized string's tokens, with errors that name the modality."""

    def __init__(self, text: str, modality: str):
        if not isinstance(text, str):
            raise SerializationError(f"modality {modality!r}: from_text expects a str, got {type(text).__name__}")
        self.tokens = text.split()
        self.modality = modality
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.tokens)

    def peek(self) -> str | None:
        return None if self.done() else self.tokens[self.pos]

    def next(self, expected: str) -> str:
        if self.done():
            raise TruncatedTextError(
                f"modality {self.modality!r}: the text ends after {len(self.tokens)} tokens but {expected} was expected"
            )
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def value(self, axis: int | None = None) -> tuple[int, int]:
        """Read one value token (of ``axis`` when given) → (axis, value)."""
        expected = f"a value token v{axis}=0..{VALUE_BINS - 1}" if axis is not None else "a value token vK=N"
        tok = self.next(expected)
        try:
            parsed = parse_value_token(tok)
        except SerializationError as exc:
            raise parse_error(self.modality, tok, self.pos - 1, expected) from exc
        if parsed is None or (axis is not None and parsed[0] != axis):
            raise parse_error(self.modality, tok, self.pos - 1, expected)
        return parsed

    def literal(self, *words: str) -> str:
        tok = self.next(" or ".join(repr(w) for w in words))
        if tok not in words:
            raise parse_error(self.modality, tok, self.pos - 1, " or ".join(repr(w) for w in words))
        return tok

    def fail(self, expected: str) -> SerializationError:
        tok = self.tokens[self.pos] if not self.done() else "<end>"
        return parse_error(self.modality, tok, self.pos, expected)


def quantize_coords(values: np.ndarray | Sequence[float], bins: int = VALUE_BINS) -> np.ndarray:
    """[0, 1] floats → integer bins ``0..bins-1`` (``floor(x * bins)``, clipped); see ``boxes.quantize``."""
    from .boxes import quantize

    return quantize(np.asarray(values, dtype=np.float64), bins)


def dequantize_coords(bins_: np.ndarray | Sequence[int], bins: int = VALUE_BINS) -> np.ndarray:
    """Integer bins → bin centres in [0, 1] (the round trip error is at most ``0.5 / bins``)."""
    from .boxes import dequantize

    return dequantize(np.asarray(bins_, dtype=np.int64), bins)


def content_seed(raw: Any) -> int:
    """A 64-bit seed derived from a JSON value's canonical text: the same raw always gives the same seed."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=float)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def class_words(name: str) -> str:
    """A class name as the text 4M writes it: lower case, runs of spaces/hyphens/slashes/underscores → one
    space. ``"Traffic Light"`` and ``"traffic_light"`` → ``"traffic light"`` (one token of the released
    vocabulary, and of ours when a plugin declares it); ``"hair _ dryer"`` → ``"hair dryer"``."""
    return re.sub(r"[\s\-/_]+", " ", str(name).strip().lower()).strip()


def normalize_class_name(name: str) -> str:
    """A class name as one identifier: :func:`class_words` joined with ``_`` (``"traffic_light"``)."""
    return class_words(name).replace(" ", "_")


def round_coords(values: np.ndarray | Sequence[float], bins: int = VALUE_BINS) -> np.ndarray:
    """[0, 1] floats → integer bins ``round(x · (bins - 1))`` (half to even, as Python's ``round``), clipped:
    the coordinate tokens of 4M's boxes (``v0=0`` is 0, ``v0=999`` is 1)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.rint(v * (bins - 1)).astype(np.int64)


def unround_coords(bins_: np.ndarray | Sequence[int], bins: int = VALUE_BINS) -> np.ndarray:
    """The inverse of :func:`round_coords`: bin ``b`` → ``b / (bins - 1)`` (exact at 0 and 1)."""
    return np.asarray(bins_, dtype=np.float64) / (bins - 1)


def sequence_tokenizer(*, spec: Any, **overrides: Any):
    """The tokenizer factory of a ``sequence`` modality: a :class:`~fourm_core.tokenizers.SequenceTokenizer` of
    ``spec.max_length`` ids named after the modality (``overrides``, e.g. ``text_tokenizer=``, are passed on)."""
    from fourm_core.tokenizers import SequenceTokenizer

    return SequenceTokenizer(**{"max_length": spec.max_length, "modality": spec.name, **overrides})


def span_mask(ids: Sequence[int], keep: Sequence[bool], sentinel_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """4M's span masking of one id sequence, given which tokens stay input (``keep``): the input has each run
    of masked tokens replaced by the next sentinel (``sentinel_ids[1]`` first), the target lists, per span,
    its sentinel then its tokens, and ends with the sentinel after the last span."""
    a = np.asarray(ids, dtype=np.int64)
    masked = ~np.asarray(keep, dtype=bool)
    if masked.shape != a.shape:
        raise SerializationError(f"span_mask: keep has {masked.size} entries for {a.size} ids")
    start = masked & ~np.concatenate([[False], masked[:-1]])
    nspans = int(start.sum())
    if nspans + 1 >= len(sentinel_ids):
        raise SerializationError(f"span_mask: {nspans} spans need {nspans + 2} sentinels, {len(sentinel_ids)} given")
    sent = np.asarray(sentinel_ids, dtype=np.int64)
    span_no = np.cumsum(start)
    emit = ~masked | start
    inp = np.where(masked, sent[span_no], a)[emit]
    starts_in_masked = np.cumsum(masked)[start] - 1  # index of each span's first token among the masked ones
    tgt = np.insert(a[masked], starts_in_masked, sent[1:nspans + 1])
    return inp.tolist(), [*tgt.tolist(), int(sent[nspans + 1])]


def merge_spans(input_ids: Sequence[int], target_ids: Sequence[int], sentinel_ids: Sequence[int]) -> list[int]:
    """The inverse of :func:`span_mask`: every sentinel of the input replaced by the target's tokens after
    the same sentinel (up to the next one). A sentinel the target lacks leaves its span empty."""
    sentinels = set(int(s) for s in sentinel_ids)
    tgt = np.asarray(target_ids, dtype=np.int64)
    is_sent = np.isin(tgt, list(sentinels))
    bounds = np.flatnonzero(is_sent)
    spans = {int(tgt[b]): tgt[b + 1:e].tolist() for b, e in zip(bounds, [*bounds[1:], len(tgt)])}
    inp = np.asarray(input_ids, dtype=np.int64)
    at = np.flatnonzero(np.isin(inp, list(sentinels)))
    pieces = np.split(inp, at)  # pieces[k + 1] starts with the k-th sentinel of the input
    out = pieces[0].tolist()
    for piece in pieces[1:]:  # one step per span
        out += spans.get(int(piece[0]), []) + piece[1:].tolist()
    return out
