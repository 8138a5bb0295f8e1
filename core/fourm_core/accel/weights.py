"""Values derived from model weights (transposed copies, int8 tables), rebuilt when the weights change.

PyTorch has no public way to ask whether a tensor was modified in place: an optimizer step or a
``weight.mul_(2)`` under ``no_grad`` changes the values and keeps the storage. The only signal is the version
counter autograd uses to detect in-place modification, readable as ``Tensor._version`` (the public
``torch.autograd.graph.increment_version`` bumps the same counter). :func:`weights_key` is the one place that
reads it; everything else compares keys.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from torch import Tensor


def weights_key(tensors: Iterable[Tensor]) -> tuple:
    """Identity of the current values of ``tensors``: storage, in-place version, dtype and device of each (a
    value derived from them is stale once the key changes)."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


class DerivedCache:
    """``name`` → a value built from some weights, rebuilt when :func:`weights_key` of those weights changes."""

    def __init__(self) -> None:
        self._store: dict[Hashable, tuple[tuple, Any]] = {}

    def get(self, name: Hashable, tensors: Iterable[Tensor], build: Callable[[], Any]) -> Any:
        """The value of ``name`` for the current ``tensors``; ``build()`` makes it when missing or stale."""
        key = weights_key(tensors)
        cached = self._store.get(name)
        if cached is None or cached[0] != key:
            cached = (key, build())
            self._store[name] = cached
        return cached[1]

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget every value whose name satisfies ``predicate``."""
        for name in [n for n in self._store if predicate(n)]:
            del self._store[name]
