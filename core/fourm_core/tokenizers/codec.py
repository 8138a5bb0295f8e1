"""Codecs: a modality's raw values ↔ token ids (its transform or serializer joined with its tokenizer).

A *tokenizer directory* holds ``DIR/<modality>/`` (``save_pretrained`` of the family) for every image /
vector modality and ``DIR/text/tokenizer.json`` (the shared WordPiece vocabulary of sequence modalities).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_registry import ModalitySet, ModalitySpec
from fourm_registry.errors import FourmError

from ..kinds import ADAPTERS, adapter_for
from .base import CONFIG_NAME, load_tokenizer
from .sequence import SequenceTokenizer
from .text import TextTokenizer

logger = logging.getLogger(__name__)

TEXT_DIR = "text"
TEXT_FILE = "tokenizer.json"
#: kinds whose tokens come from a tokenizer (pixels / embedding_sequence are fed to the model as they are)
TOKENIZED_KINDS = tuple(name for name, a in ADAPTERS.items() if a.discrete)


class CodecError(FourmError, ValueError):
    """A codec cannot be built or used (missing tokenizer, mismatched layout, bad raw value)."""


def _train_hint(name: str, directory: str | os.PathLike) -> str:
    return f"train it with `fourm train-tokenizer --modality {name} --data STORE.zarr --out {directory}`"


class ArrayTransform:
    """Default raw ↔ tensor transform for modalities whose plugin declares none.

    Image-like raws are ``(H, W, C)`` (or ``(H, W)``) arrays: uint8 is scaled to [0, 1]; integer class maps
    with ``num_classes`` become ``(B, H, W)`` int64 ids; floats pass through. ``vector=True``: raws are
    ``(D,)`` arrays. ``from_tensor`` inverts it (class probabilities → argmax ids; uint8 rounded and clipped).
    """

    def __init__(self, *, vector: bool = False, dtype: str = "float32", num_classes: int | None = None):
        self.vector, self.dtype, self.num_classes = vector, dtype, num_classes

    def crop(self, raw: np.ndarray, box: tuple[int, int, int, int], flip: bool, size: tuple[int, int]) -> np.ndarray:
        """Crop ``box=(top, left, height, width)``, optionally flip horizontally, resize to ``size``."""
        top, left, h, w = (int(v) for v in box)
        arr = np.asarray(raw)[top:top + h, left:left + w]
        if flip:
            arr = arr[:, ::-1]
        squeeze = arr.ndim == 2
        t = torch.from_numpy(np.ascontiguousarray(arr if not squeeze else arr[..., None])).permute(2, 0, 1)[None]
        if tuple(t.shape[2:]) != tuple(size):
            if np.issubdtype(arr.dtype, np.integer) and self.num_classes:
                t = F.interpolate(t.float(), size=tuple(size), mode="nearest")
            else:
                t = F.interpolate(t.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
        out = t[0].permute(1, 2, 0).numpy()
        out = out[..., 0] if squeeze else out
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        return out.astype(arr.dtype)

    def to_tensor(self, raws: list[Any]) -> torch.Tensor:
        arr = np.stack([np.asarray(r) for r in raws])
        if self.vector:
            return torch.from_numpy(arr.astype(np.float32))
        if arr.ndim == 3:
            arr = arr[..., None]
        if self.num_classes and np.issubdtype(arr.dtype, np.integer):
            return torch.from_numpy(arr[..., 0].astype(np.int64))  # (B, H, W) class ids
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)  # (B, C, H, W)
        return t.float() / 255.0 if arr.dtype == np.uint8 else t.float()

    def from_tensor(self, x: torch.Tensor) -> list[np.ndarray]:
        x = x.detach().float().cpu()
        if self.vector:
            return [r.numpy().astype(self.dtype) for r in x]
        if self.num_classes and x.dim() == 4 and x.shape[1] == self.num_classes:
            return [r.numpy().astype(self.dtype) for r in x.argmax(dim=1)]
        arr = x.permute(0, 2, 3, 1).numpy()
        if self.dtype == "uint8":
            arr = np.clip(np.rint(arr * 255.0), 0, 255)
        return [a.astype(self.dtype) for a in arr]


def default_transform(spec: ModalitySpec, tokenizer: Any = None) -> ArrayTransform:
    dtype = spec.storage.dtype if spec.storage is not None and not spec.storage.is_json else "float32"
    num_classes = getattr(tokenizer, "config", {}).get("num_classes") if tokenizer is not None else None
    image_like = adapter_for(spec).image_like
    return ArrayTransform(vector=not image_like, dtype=dtype, num_classes=num_classes)


class ModalityCodec:
    """``encode(raws) -> LongTensor (B, num_tokens)``, ``decode(tokens) -> list[raw]`` for one modality."""

    def __init__(self, spec: ModalitySpec, tokenizer: Any, transform: Any = None, serializer: Any = None):
        self.spec = spec
        self.text = adapter_for(spec).autoregressive  # text ids through the shared tokenizer and a serializer
        if self.text:
            if not isinstance(tokenizer, SequenceTokenizer):
                raise CodecError(f"modality {spec.name!r} is a sequence: its tokenizer must be a SequenceTokenizer, "
                                 f"got {type(tokenizer).__name__}")
            tokenizer = tokenizer.bind(serializer=serializer, modality=spec.name)
        elif not adapter_for(spec).discrete:
            raise CodecError(f"modality {spec.name!r} of kind {spec.kind!r} is not tokenized (only {TOKENIZED_KINDS})")
        self.tokenizer = tokenizer
        self.serializer = serializer
        self.transform = transform if transform is not None or self.text else default_transform(spec, tokenizer)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def num_tokens(self) -> int:
        return self.tokenizer.num_tokens

    def to_tensor(self, raws: list[Any]) -> torch.Tensor:
        return self.transform.to_tensor(list(raws))

    def encode(self, raws: list[Any]) -> torch.Tensor:
        """Raw values of this modality → ``(B, num_tokens)`` int64 ids."""
        if self.text:
            return self.tokenizer.encode(list(raws))
        return self.tokenizer.encode(self.to_tensor(raws)).cpu()

    def decode(self, tokens: torch.Tensor) -> list[Any]:
        """``(B, num_tokens)`` ids → raw values."""
        if self.text:
            return self.tokenizer.decode(tokens)
        return self.transform.from_tensor(self.tokenizer.decode(tokens))

    def __repr__(self) -> str:
        return f"ModalityCodec({self.spec.name!r}, {type(self.tokenizer).__name__}, vocab={self.vocab_size})"


def sequence_codec(spec: ModalitySpec, text: TextTokenizer, *, tokenizer_dir: str | os.PathLike | None = None
                   ) -> ModalityCodec:
    """The codec of a sequence modality: its plugin's serializer over the shared ``text`` tokenizer."""
    transform = spec.transform.build() if spec.transform is not None else None
    base = spec.tokenizer.build() if spec.tokenizer is not None else SequenceTokenizer(max_length=spec.max_length)
    if not isinstance(base, SequenceTokenizer):
        raise CodecError(f"modality {spec.name!r}: its tokenizer factory returned {type(base).__name__}, "
                         f"expected a SequenceTokenizer")
    tok = base.bind(text_tokenizer=text, modality=spec.name)
    context = {"tokenizer_dir": str(tokenizer_dir)} if tokenizer_dir is not None else {}
    serializer = spec.serializer.build(context=context)
    return ModalityCodec(spec, tok, transform, serializer)


def load_codecs(directory: str | os.PathLike, modalities: ModalitySet, *, map_location: str = "cpu") -> dict[str, ModalityCodec]:
    """Codecs of every tokenized modality of ``modalities`` from a tokenizer directory."""
    root = Path(directory)
    codecs: dict[str, ModalityCodec] = {}
    text: TextTokenizer | None = None
    for spec in modalities.specs:
        if not adapter_for(spec).discrete:
            continue
        transform = spec.transform.build() if spec.transform is not None else None
        if adapter_for(spec).autoregressive:
            if text is None:
                path = root / TEXT_DIR / TEXT_FILE
                if not path.is_file():
                    raise CodecError(f"no text tokenizer for sequence modality {spec.name!r}: {path} is missing; "
                                     f"{_train_hint('text', root)}")
                text = TextTokenizer.load(path)
            codecs[spec.name] = sequence_codec(spec, text, tokenizer_dir=root)
            continue
        sub = root / spec.name
        if not (sub / CONFIG_NAME).is_file():
            raise CodecError(f"no tokenizer for modality {spec.name!r} in {root} (expected {sub}/config.json); "
                             f"{_train_hint(spec.name, root)}")
        tok = load_tokenizer(sub, map_location=map_location)
        if spec.num_tokens is not None and tok.num_tokens != spec.num_tokens:
            raise CodecError(f"tokenizer {sub} gives {tok.num_tokens} tokens, but modality {spec.name!r} declares "
                             f"{spec.num_tokens}; retrain it ({_train_hint(spec.name, root)}) or fix the plugin's spec")
        if spec.vocab_size is not None and tok.vocab_size > spec.vocab_size:
            raise CodecError(f"tokenizer {sub} has {tok.vocab_size} codes, more than modality {spec.name!r}'s "
                             f"vocab_size {spec.vocab_size}")
        codecs[spec.name] = ModalityCodec(spec, tok, transform)
    return codecs


def save_codecs(directory: str | os.PathLike, codecs: dict[str, ModalityCodec]) -> None:
    """Write a tokenizer directory that :func:`load_codecs` reads."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    text_saved: TextTokenizer | None = None
    for name, codec in codecs.items():
        codec.tokenizer.save_pretrained(root / name)
        if isinstance(codec.tokenizer, SequenceTokenizer):
            text = codec.tokenizer.text_tokenizer
            if text is None:
                raise CodecError(f"codec {name!r} has no text tokenizer to save")
            if text_saved is None:
                text.save(root / TEXT_DIR / TEXT_FILE)
                text_saved = text
            elif text is not text_saved:
                raise CodecError(f"codec {name!r} uses a different text tokenizer than the other sequence modalities; "
                                 f"a tokenizer directory holds one shared vocabulary")
