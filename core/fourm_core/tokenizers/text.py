"""The shared WordPiece text tokenizer of every sequence modality (captions, boxes, palettes, metadata).

Vocabulary layout (FIXED: span masking and the model rely on it):

====================  ==========================================================================
``0 .. 3``            ``[PAD]`` ``[UNK]`` ``[SOS]`` ``[EOS]``
``4 .. 203``          sentinels ``[S_0]`` .. ``[S_199]``
``204 .. 4203``       coordinate tokens ``v0=0`` .. ``v0=999``, ``v1=..``, ``v2=..``, ``v3=..``
next                  special tokens declared by the installed sequence plugins (``spec.special_tokens``)
rest                  the trained WordPiece vocabulary (lower-cased, BERT pre-tokenisation)
====================  ==========================================================================

Every special token is a whole token (never split). The file format is the Hugging Face ``tokenizers``
JSON, so the reference 4M text tokenizer (``[PAD]`` 0 … ``[EOS]`` 3, ``[S_i]`` from 4, its own
coordinate tokens) loads with :meth:`TextTokenizer.load` as well.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fourm_registry.errors import FourmError

if TYPE_CHECKING:
    from fourm_registry import ModalitySet

logger = logging.getLogger(__name__)

BASE_SPECIALS = ("[PAD]", "[UNK]", "[SOS]", "[EOS]")
PAD_ID, UNK_ID, SOS_ID, EOS_ID = 0, 1, 2, 3
NUM_SENTINELS = 200
NUM_COORD_BINS = 1000
COORD_PREFIXES = ("v0", "v1", "v2", "v3")
_SENTINEL_RE = re.compile(r"^\[S_(\d+)\]$")


class TextTokenizerError(FourmError, ValueError):
    """A text tokenizer file or argument is invalid."""


def sentinel_tokens(n: int = NUM_SENTINELS) -> list[str]:
    return [f"[S_{i}]" for i in range(n)]


def coordinate_tokens(bins: int = NUM_COORD_BINS) -> list[str]:
    return [f"{p}={i}" for p in COORD_PREFIXES for i in range(bins)]


def fixed_special_tokens() -> list[str]:
    """The fixed head of the vocabulary: base specials, sentinels, coordinate tokens (ids 0..4203)."""
    return [*BASE_SPECIALS, *sentinel_tokens(), *coordinate_tokens()]


class TextTokenizer:
    """WordPiece tokenizer with the fixed special layout above (wraps ``tokenizers.Tokenizer``)."""

    def __init__(self, tokenizer, *, source: str = "<memory>"):
        self._tok = tokenizer
        self.source = source
        self._validate()
        vocab = self._tok.get_vocab(with_added_tokens=True)
        sentinels = sorted((int(m.group(1)), i) for t, i in vocab.items() if (m := _SENTINEL_RE.match(t)))
        self._sentinel_ids = [i for _, i in sentinels]

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def train(cls, corpus: Iterable[str], *, special_tokens: Sequence[str] = (), vocab_size: int = 30000,
              lowercase: bool = True, min_frequency: int = 0) -> TextTokenizer:
        """Train the WordPiece part on ``corpus``; ``special_tokens`` (plugin-declared: class names, ...)
        follow the fixed head. ``vocab_size`` is the total size (specials included)."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        fixed = fixed_special_tokens()
        seen = set(fixed)
        extra: list[str] = []
        for t in special_tokens:
            if not isinstance(t, str) or not t.strip():
                raise TextTokenizerError(f"special token {t!r} must be a non-empty string")
            if t not in seen:
                seen.add(t)
                extra.append(t)
        specials = fixed + extra
        if vocab_size < len(specials) + 100:
            # still valid (the trainer keeps every special token and the corpus alphabet), but tiny
            logger.warning("text tokenizer vocab_size %d leaves little room after %d special tokens: the WordPiece "
                           "part holds only the corpus alphabet (the reference uses 30000)", vocab_size, len(specials))
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        added = [AddedToken(t, single_word=i >= len(BASE_SPECIALS), normalized=False, special=True)
                 for i, t in enumerate(specials)]
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                            special_tokens=added, continuing_subword_prefix="##")
        tok.train_from_iterator((str(t) for t in corpus), trainer=trainer)
        out = cls(tok, source="<trained>")
        for i, t in enumerate(specials):
            if out.token_to_id(t) != i:
                raise TextTokenizerError(f"training put special token {t!r} at id {out.token_to_id(t)}, not {i}")
        logger.info("trained text tokenizer: %d tokens (%d special)", out.vocab_size, len(specials))
        return out

    @classmethod
    def build_for(cls, modalities: ModalitySet, corpus: Iterable[str], vocab_size: int = 30000,
                  **kwargs) -> TextTokenizer:
        """Train with the special tokens declared by every ``sequence`` modality of ``modalities``."""
        from ..kinds import adapter_for

        extra: list[str] = []
        for spec in modalities.specs:
            if adapter_for(spec).autoregressive:  # the modalities that share this text vocabulary
                extra.extend(spec.special_tokens)
        return cls.train(corpus, special_tokens=extra, vocab_size=vocab_size, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextTokenizer:
        """Load one ``tokenizers`` JSON file (ours or the reference's)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise TextTokenizerError(
                f"text tokenizer file {path} does not exist; train one with "
                f"`fourm train-tokenizer --modality text --data STORE.zarr --out DIR` (writes DIR/text/tokenizer.json)")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the library's messages do not name the file
            raise TextTokenizerError(f"{path} is not a valid tokenizers JSON file: {exc}") from exc
        return cls(tok, source=str(path))

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as one JSON file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(path), pretty=False)

    def _validate(self) -> None:
        model = json.loads(self._tok.to_str()).get("model", {}).get("type")
        if model != "WordPiece":
            raise TextTokenizerError(f"text tokenizer {self.source}: model type is {model!r}, expected 'WordPiece'")
        for i, t in enumerate(BASE_SPECIALS):
            got = self._tok.token_to_id(t)
            if got != i:
                raise TextTokenizerError(
                    f"text tokenizer {self.source}: {t} must have id {i} (fixed layout [PAD] 0, [UNK] 1, [SOS] 2, "
                    f"[EOS] 3, [S_0].. from 4), got {got}")
        if self._tok.token_to_id("[S_0]") != len(BASE_SPECIALS):
            raise TextTokenizerError(f"text tokenizer {self.source}: sentinel [S_0] must have id 4, "
                                     f"got {self._tok.token_to_id('[S_0]')}")

    # -- vocabulary ----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def sentinel_ids(self) -> list[int]:
        """Ids of ``[S_0]``, ``[S_1]``, ... in sentinel order."""
        return list(self._sentinel_ids)

    pad_id, unk_id, sos_id, eos_id = PAD_ID, UNK_ID, SOS_ID, EOS_ID

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(int(i))

    @property
    def backend(self):
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    # -- encode / decode -----------------------------------------------------------------------------
    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without ``[EOS]`` or padding."""
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str):
                raise TextTokenizerError(f"text tokenizer {self.source}: encode takes strings, got {type(t).__name__}")
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, texts: Sequence[str] | str, max_length: int) -> torch.Tensor:
        """``(B, max_length)`` int64: ids, then ``[EOS]``, then ``[PAD]`` (truncated so that EOS fits)."""
        if max_length < 1:
            raise TextTokenizerError(f"max_length must be >= 1 (room for [EOS]), got {max_length}")
        rows = self.encode_ids(texts)
        out = torch.full((len(rows), max_length), PAD_ID, dtype=torch.long)
        for b, ids in enumerate(rows):  # per sample, not per token
            ids = ids[: max_length - 1] + [EOS_ID]
            out[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Texts of ``(B, L)`` ids: stop at the first ``[EOS]``, skip ``[PAD]``; other specials are kept."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() == 1:
                ids = ids[None]
            ids = ids.tolist()
        texts = []
        for row in ids:
            row = [int(i) for i in row]
            if EOS_ID in row:
                row = row[: row.index(EOS_ID)]
            texts.append([i for i in row if i != PAD_ID])
        return self._tok.decode_batch(texts, skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, source={self.source!r})"
