"""Strict configuration: one check that a mapping holds only known keys (no torch here).

Every config reader of fourm (masking, model, trainer, checkpoint, component references) rejects unknown
keys with the same message, naming where the mapping came from and the valid keys, so that a misspelt key
fails loudly instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SpecError


def check_mapping(data: Any, where: str, *, error: type[Exception] = SpecError) -> Mapping[str, Any]:
    """``data`` itself when it is a mapping, else ``error("{where}: expected a mapping, got <type> (<data>)")``."""
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping, got {type(data).__name__} ({data!r})")
    return data


def check_keys(data: Mapping[str, Any], valid: Iterable[str], where: str, *,
               error: type[Exception] = SpecError, sep: str = ": ") -> None:
    """Raise ``error("{where}: unknown key(s) 'a', 'b'; valid keys: x, y")`` when ``data`` has keys outside
    ``valid`` (unknown keys sorted, valid keys in the order given; ``sep`` joins ``where`` and the rest)."""
    valid = list(valid)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise error(f"{where}{sep}unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")


def attrs_kwargs(cls: type, data: Any, where: str, *, error: type[Exception] = SpecError) -> dict[str, Any]:
    """``data`` as keyword arguments of the attrs class ``cls``: ``None`` reads as ``{}``, anything but a mapping
    raises (:func:`check_mapping`), a key that is not a field raises listing the fields (:func:`check_keys`)."""
    if data is None:
        return {}
    import attrs

    check_keys(check_mapping(data, where, error=error), [f.name for f in attrs.fields(cls)], where, error=error)
    return dict(data)
