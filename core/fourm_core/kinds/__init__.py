"""One adapter per modality kind: what ``image``, ``pixels``, ``sequence``, ``vector`` and
``embedding_sequence`` mean to the loader, the model, generation and the any-to-any API.

>>> from fourm_core.kinds import adapter_for
>>> kind = adapter_for(spec)              # a KindAdapter
>>> kind.placeholder(spec).shape          # the tensor of an absent sample
>>> kind.discrete, kind.autoregressive    # token ids? decoded left to right?

Core code asks the adapter instead of branching on ``spec.kind``. A new kind is one module with a
:class:`KindAdapter` subclass, listed in :data:`ADAPTERS` (the registry's ``KINDS`` names the valid kinds).
"""

from __future__ import annotations

from typing import Any

from ..errors import ModDictError
from .base import KindAdapter, TokenKind, looks_like_ids, to_numpy_image
from .embedding_sequence import EmbeddingSequenceKind
from .image import ImageKind
from .pixels import PixelsKind, pixel_tensor
from .sequence import SequenceKind
from .vector import VectorKind

#: the adapter of every kind, by ``ModalitySpec.kind``
ADAPTERS: dict[str, KindAdapter] = {a.name: a for a in (ImageKind(), VectorKind(), SequenceKind(), PixelsKind(),
                                                        EmbeddingSequenceKind())}


def adapter_for(spec_or_kind: Any) -> KindAdapter:
    """The adapter of a spec (or of a kind name); an unknown kind raises naming the modality and the kinds."""
    kind = spec_or_kind if isinstance(spec_or_kind, str) else spec_or_kind.kind
    try:
        return ADAPTERS[kind]
    except KeyError:
        who = "" if isinstance(spec_or_kind, str) else f"modality {spec_or_kind.name!r}: "
        raise ValueError(f"{who}no adapter for kind {kind!r}; known kinds: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "EmbeddingSequenceKind", "ImageKind", "KindAdapter", "ModDictError", "PixelsKind",
           "SequenceKind", "TokenKind", "VectorKind", "adapter_for", "looks_like_ids", "pixel_tensor",
           "to_numpy_image"]
