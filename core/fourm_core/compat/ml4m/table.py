"""The reference's modality table, as data: what a released 4M checkpoint does not store about its modalities.

A released checkpoint's ``config.json`` names its modalities (``domains_in`` / ``domains_out``) but not their
vocabulary sizes, lengths, grids or position embeddings: the reference reads those from its own modality table.
This module holds the same facts for every modality the released 4M-7, 4M-21 and 4M-7-SR models use, plus the
fourm plugin distribution that provides each one (an error names it when it is not installed).

Entries (:class:`RefModality`):

* ``img`` with a vocabulary: VQ token grids ``(input_size / patch_size)²`` (``tok_*@224``: 14×14; ``@448``: 28×28;
  the DINOv2 / ImageBind maps use 14-pixel patches: 16×16; the ``tok_*_global`` vectors: 16 tokens with learned
  positions);
* ``img`` without one: raw pixels (``rgb@*``) projected per 16×16 patch;
* ``seq``: text over the shared 30k WordPiece vocabulary, ``max_tokens`` long (``max_length`` is the position
  range of its embedding, which differs for ``human_poses``);
* ``seq_emb``: continuous vectors (T5-XXL states of 4096 dims) projected by a linear layer with bias.

Resolution variants (``tok_rgb@448``) are the same plugin as the 224 entry at another grid: :func:`lookup`
derives them for any ``@<size>`` of an image entry, so a table row exists only for the base resolution.
"""

from __future__ import annotations

import re

import attrs

#: vocabulary of the reference's WordPiece text tokenizer (every ``seq`` modality shares it)
TEXT_VOCAB = 30_000
#: rows of the reference's 1-D sin-cos position buffers (sliced to nothing: always stored whole)
SEQ_POS_ROWS = 512
_RES = re.compile(r"^(?P<base>.+)@(?P<size>\d+)$")


@attrs.frozen
class RefModality:
    """One modality of the reference's table (facts, not code)."""

    name: str
    type: str  # "img" | "seq" | "seq_emb"
    plugin: str  # fourm distribution providing it
    vocab_size: int | None = None
    max_tokens: int | None = None  # seq / seq_emb length, or the token count of img
    max_length: int | None = None  # seq: position range of the embedding (defaults to max_tokens)
    input_size: int | None = None  # img: pixels per side
    patch_size: int | None = None  # img: pixels per token
    channels: int | None = None  # raw pixels
    sincos: bool = True
    embed_dim: int | None = None  # seq_emb input width

    @property
    def pixels(self) -> bool:
        return self.type == "img" and self.vocab_size is None

    @property
    def grid(self) -> tuple[int, int] | None:
        if self.type != "img" or self.input_size is None:
            return None
        side = self.input_size // self.patch_size
        return (side, side)

    @property
    def num_tokens(self) -> int:
        if self.type == "img":
            if self.grid is not None:
                return self.grid[0] * self.grid[1]
            return int(self.max_tokens)
        return int(self.max_tokens)

    def info(self, *, in_encoder: bool, in_decoder: bool) -> dict:
        """The modality in the layout :func:`~fourm_core.compat.ml4m.modalities.modalities_from_reference`
        reads (the ``modalities`` section of a reference config)."""
        emb: dict = {"sincos_pos_emb": self.sincos}
        if self.type == "img":
            size = self.input_size if self.input_size is not None else self.patch_size * int(self.num_tokens ** 0.5)
            emb.update(image_size=[size, size], patch_size=[self.patch_size, self.patch_size])
            if self.pixels:
                emb["num_channels"] = self.channels
        if self.type == "seq_emb":
            emb["orig_emb_dim"] = self.embed_dim
        out = {"type": self.type, "max_tokens": self.num_tokens, "in_encoder": in_encoder, "in_decoder": in_decoder,
               "encoder_embedding": emb}
        if self.vocab_size is not None:
            out["vocab_size"] = self.vocab_size
        if self.max_length is not None:
            out["max_length"] = self.max_length
        return out


def _tok(name: str, vocab: int, plugin: str, *, patch: int = 16, size: int | None = 224) -> RefModality:
    return RefModality(name=name, type="img", plugin=plugin, vocab_size=vocab, input_size=size, patch_size=patch)


def _seq(name: str, plugin: str, max_tokens: int, max_length: int | None = None) -> RefModality:
    return RefModality(name=name, type="seq", plugin=plugin, vocab_size=TEXT_VOCAB, max_tokens=max_tokens,
                       max_length=max_length)


_ENTRIES = (
    RefModality(name="rgb@224", type="img", plugin="fourm-rgb", input_size=224, patch_size=16, channels=3),
    _tok("tok_rgb@224", 16384, "fourm-rgb"),
    _tok("tok_depth@224", 8192, "fourm-depth"),
    _tok("tok_normal@224", 8192, "fourm-normal"),
    _tok("tok_semseg@224", 4096, "fourm-semseg"),
    _tok("tok_clip@224", 8192, "fourm-clip"),
    _tok("tok_canny_edge@224", 8192, "fourm-canny-edge"),
    _tok("tok_sam_edge@224", 8192, "fourm-sam-edge"),
    _tok("tok_dinov2@224", 8192, "fourm-dinov2", patch=14),
    _tok("tok_imagebind@224", 8192, "fourm-imagebind", patch=14),
    attrs.evolve(_tok("tok_dinov2_global", 8192, "fourm-dinov2", patch=56, size=None), max_tokens=16, sincos=False),
    attrs.evolve(_tok("tok_imagebind_global", 8192, "fourm-imagebind", patch=56, size=None), max_tokens=16,
                 sincos=False),
    _seq("caption", "fourm-caption", 256),
    _seq("det", "fourm-det", 256),
    _seq("metadata", "fourm-metadata", 40),
    _seq("color_palette", "fourm-color-palette", 23),
    _seq("sam_instance", "fourm-sam-instance", 290),
    _seq("human_poses", "fourm-smpl-pose", 275, max_length=263),
    RefModality(name="t5_caption", type="seq_emb", plugin="fourm-text-embedding", max_tokens=77, embed_dim=4096),
)

#: reference name -> entry, base resolutions only (see :func:`lookup` for ``@<size>`` variants)
REFERENCE_MODALITIES: dict[str, RefModality] = {e.name: e for e in _ENTRIES}


def lookup(name: str) -> RefModality | None:
    """The table entry of a reference modality name; ``<img>@<size>`` of any size derives from the ``@224``
    entry (same vocabulary and patch size, ``size / patch`` tokens per side). None if the name is unknown."""
    if name in REFERENCE_MODALITIES:
        return REFERENCE_MODALITIES[name]
    m = _RES.match(name)
    if m is None:
        return None
    base = REFERENCE_MODALITIES.get(f"{m['base']}@224")
    size = int(m["size"])
    if base is None or base.type != "img" or base.input_size is None or size % base.patch_size:
        return None
    return attrs.evolve(base, name=name, input_size=size)


def base_name(name: str) -> str:
    """``tok_rgb@448`` → ``tok_rgb@224`` (the name the plugins declare as their alias); others unchanged."""
    m = _RES.match(name)
    return f"{m['base']}@224" if m else name
