"""Tokenizer of a sequence modality: its text serializer followed by the shared text tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .text import TextTokenizer


class SequenceTokenizer:
    """``encode(raws) -> (B, max_length)`` ids through ``serializer.to_text`` and the shared
    :class:`TextTokenizer`; ``decode`` back through ``serializer.from_text``. No trainable weights.

    A plugin's ``tokenizer`` factory returns it *unbound* (``SequenceTokenizer(max_length=...)``): the
    serializer and the shared text tokenizer are attached by :meth:`bind` (``ModalityCodec`` does that).
    """

    family = "sequence"

    def __init__(self, serializer: Any = None, text_tokenizer: TextTokenizer | None = None, max_length: int = 256, *,
                 modality: str | None = None):
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"SequenceTokenizer{self._where(modality)}: max_length must be an int >= 2, got {max_length!r}")
        self.serializer = serializer
        self.text_tokenizer = text_tokenizer
        self.max_length = max_length
        self.modality = modality

    @staticmethod
    def _where(modality: str | None) -> str:
        return f" of modality {modality!r}" if modality else ""

    def bind(self, *, serializer: Any = None, text_tokenizer: TextTokenizer | None = None,
             modality: str | None = None) -> SequenceTokenizer:
        """A copy with the serializer / text tokenizer / modality name filled in."""
        return SequenceTokenizer(serializer if serializer is not None else self.serializer,
                                 text_tokenizer if text_tokenizer is not None else self.text_tokenizer,
                                 self.max_length, modality=modality or self.modality)

    def _require(self) -> TextTokenizer:
        if self.text_tokenizer is None or self.serializer is None:
            missing = "text tokenizer" if self.text_tokenizer is None else "serializer"
            raise ValueError(
                f"SequenceTokenizer{self._where(self.modality)} has no {missing}; load it with "
                f"fourm_core.tokenizers.load_codecs(DIR, modalities) or call .bind(serializer=..., text_tokenizer=...)")
        return self.text_tokenizer

    @property
    def vocab_size(self) -> int:
        return self._require().vocab_size

    @property
    def num_tokens(self) -> int:
        return self.max_length

    def to_texts(self, raws: list[Any]) -> list[str]:
        self._require()
        texts = []
        for raw in raws:
            text = self.serializer.to_text(raw)
            if not isinstance(text, str):
                raise ValueError(f"serializer{self._where(self.modality)} returned {type(text).__name__}, not str")
            texts.append(text)
        return texts

    def encode(self, raws: list[Any]) -> torch.Tensor:
        """Raw JSON values → ``(B, max_length)`` int64 (ids, ``[EOS]``, ``[PAD]``)."""
        return self._require().encode(self.to_texts(list(raws)), self.max_length)

    def decode(self, tokens: torch.Tensor) -> list[Any]:
        """``(B, L)`` ids → raw values (``serializer.from_text`` of each decoded text)."""
        return [self.serializer.from_text(t) for t in self._require().decode(tokens)]

    def loss(self, x: Any) -> tuple[torch.Tensor, dict[str, float]]:
        raise TypeError(f"SequenceTokenizer{self._where(self.modality)} has no trainable weights; "
                        f"train the shared text tokenizer with `fourm train-tokenizer --modality text`")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` (family ``sequence``, ``max_length``); the shared vocabulary itself is saved
        once per tokenizer directory as ``DIR/text/tokenizer.json`` (see :func:`save_codecs`)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "config.json", "w", encoding="utf-8") as f:
            json.dump({"family": self.family, "modality": self.modality, "max_length": self.max_length}, f, indent=2)
