"""The shared WordPiece text tokenizer of every sequence modality (captions, boxes, palettes, metadata).

Vocabulary layout (FIXED: span masking and the model rely on it):

====================  ==========================================================================
``0 .. 3``            ``[PAD]`` ``[UNK]`` ``[SOS]`` ``[EOS]``
``4 .. 203``          sentinels ``[S_0]`` .. ``[S_199]``
``204 .. 4203``       coordinate tokens ``v0=0`` .. ``v0=999``, ``v1=..``, ``v2=..``, ``v3=..``
next                  special tokens declared by the installed sequence plugins (``spec.special_tokens``)
rest                  the trained WordPiece vocabulary (lower-cased, BERT pre-tokenisation)
====================  ==========================================================================

Every special token is a whole token (never split). The fixed head is matched on the raw text; the
plugin-declared tokens (class names such as ``traffic light``, words such as ``none``) are matched on the
normalised (lower-cased) text, as whole words, so ``TRAFFIC LIGHT`` is the one token ``traffic light``.
The file format is the Hugging Face ``tokenizers`` JSON, so the released 4M vocabulary
(``4m-wordpiece-30k``: the same head, then the 80 COCO class names as whole tokens) loads with
:meth:`TextTokenizer.load` / :meth:`TextTokenizer.from_pretrained` as well.
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

#: the released 4M / 4M-21 WordPiece vocabulary, by name (see :meth:`TextTokenizer.from_pretrained`)
RELEASED_VOCAB_NAME = "4m-wordpiece-30k"
RELEASED_VOCAB_FILE = "text_tokenizer_4m_wordpiece_30k.json"
RELEASED_VOCAB_URL = ("https://raw.githubusercontent.com/apple/ml-4m/main/fourm/utils/tokenizer/trained/"
                      + RELEASED_VOCAB_FILE)
#: a directory holding ``RELEASED_VOCAB_FILE`` (checked before the reference package's own data)
ENV_TEXT_TOKENIZER_DIR = "FOURM_TEXT_TOKENIZER_DIR"
#: file names looked for in a directory or a hub repository, in this order
TOKENIZER_FILENAMES = (RELEASED_VOCAB_FILE, "tokenizer.json", "text/tokenizer.json")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


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
        # the fixed head matches the raw text; plugin tokens (class names with spaces, words) the normalised
        # text, as whole words: the released vocabulary declares its class names the same way
        added = [AddedToken(t, single_word=i >= len(BASE_SPECIALS), normalized=i >= len(fixed), special=True)
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

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, filename: str | None = None,
                        revision: str | None = None, token: str | bool | None = None,
                        cache_dir: str | os.PathLike | None = None) -> TextTokenizer:
        """Load a vocabulary by file, directory, Hugging Face hub id or name.

        * a ``tokenizers`` JSON file;
        * a directory holding ``filename`` or one of :data:`TOKENIZER_FILENAMES`;
        * a hub repository id ``org/name``: ``hf_hub_download`` of that file (``revision``, ``token``,
          ``cache_dir``; honours ``HF_HUB_OFFLINE`` and the local cache);
        * ``"4m-wordpiece-30k"``: the released 4M vocabulary, from ``$FOURM_TEXT_TOKENIZER_DIR``, else from
          the reference package's data when ``fourm.utils.tokenizer`` (apple/ml-4m) is importable.
        """
        s = os.fspath(name_or_path)
        if s == RELEASED_VOCAB_NAME:
            return cls.load(_released_vocab_path())
        path = Path(s).expanduser()
        if path.is_file():
            return cls.load(path)
        names = (filename,) if filename else TOKENIZER_FILENAMES
        if path.is_dir():
            for n in names:
                if (path / n).is_file():
                    return cls.load(path / n)
            raise TextTokenizerError(f"text tokenizer directory {path} holds none of {', '.join(names)}")
        if _HUB_ID_RE.match(s) and not path.exists():
            return cls.load(_hub_download(s, names, revision=revision, token=token, cache_dir=cache_dir))
        raise TextTokenizerError(
            f"text tokenizer {s!r} is neither a file, a directory, a hub id 'org/name' nor the name "
            f"{RELEASED_VOCAB_NAME!r}")

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
        """``(B, max_length)`` int64: ids, then ``[EOS]``, then ``[PAD]``.

        ``ids + [EOS]`` is cut to ``max_length`` as 4M does: a sequence longer than ``max_length - 1`` loses
        its ``[EOS]`` (it did not end there)."""
        if max_length < 1:
            raise TextTokenizerError(f"max_length must be >= 1 (room for [EOS]), got {max_length}")
        rows = self.encode_ids(texts)
        out = torch.full((len(rows), max_length), PAD_ID, dtype=torch.long)
        for b, ids in enumerate(rows):  # per sample, not per token
            ids = (ids + [EOS_ID])[:max_length]
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

    def decode_ids(self, ids: Sequence[int]) -> str:
        """The text of one id list as it is: every id decoded, ``[EOS]`` / ``[PAD]`` / sentinels kept
        (``tokenizers``' ``decode(ids, skip_special_tokens=False)``, 4M's view of a token sequence)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, source={self.source!r})"


def _released_vocab_path() -> Path:
    """The released 4M vocabulary file: ``$FOURM_TEXT_TOKENIZER_DIR``, else the reference package's data."""
    env = os.environ.get(ENV_TEXT_TOKENIZER_DIR)
    tried = []
    if env:
        p = Path(env).expanduser() / RELEASED_VOCAB_FILE
        if p.is_file():
            return p
        tried.append(f"{p} (from ${ENV_TEXT_TOKENIZER_DIR})")
    import importlib.util

    try:
        found = importlib.util.find_spec("fourm.utils.tokenizer")
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        for loc in found.submodule_search_locations:
            p = Path(loc) / "trained" / RELEASED_VOCAB_FILE
            if p.is_file():
                return p
            tried.append(f"{p} (package fourm.utils.tokenizer)")
    raise TextTokenizerError(
        f"the text vocabulary {RELEASED_VOCAB_NAME!r} is not available here"
        + (f" (looked at {'; '.join(tried)})" if tried else "")
        + f". Either download {RELEASED_VOCAB_URL} (apple/ml-4m, Apache-2.0) into a directory and set "
        f"{ENV_TEXT_TOKENIZER_DIR}=DIR, or pass the file's path to TextTokenizer.from_pretrained")


def _hub_download(repo_id: str, names: Sequence[str], *, revision: str | None, token: str | bool | None,
                  cache_dir: str | os.PathLike | None) -> str:
    """The local path of the first of ``names`` in hub repository ``repo_id`` (download or cache)."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise TextTokenizerError(f"loading text tokenizer {repo_id!r} from the hub needs huggingface_hub") from exc
    errors = []
    for n in names:
        try:
            return hf_hub_download(repo_id, n, revision=revision, token=token, cache_dir=cache_dir)
        except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
            errors.append(f"{n}: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - repository missing, network, auth: say which repo
            raise TextTokenizerError(f"text tokenizer {repo_id!r} (hub, revision {revision or 'main'}): {exc}") from exc
    offline = " (HF_HUB_OFFLINE is set: only the local cache was searched)" if os.environ.get("HF_HUB_OFFLINE") else ""
    raise TextTokenizerError(f"hub repository {repo_id!r} (revision {revision or 'main'}) has none of "
                             f"{', '.join(names)}{offline}: {'; '.join(errors)}")
