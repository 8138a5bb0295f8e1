"""What :class:`fourm_core.pipeline.AnyToAny` returns (re-exported there)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch


class AnyToAnyOutput(Mapping[str, Any]):
    """Decoded outputs. ``out[name]`` is the raw output (a list of raws when the inputs were batched);
    ``out.raw[name]`` always the list; ``out.tokens[name]`` the generated token ids; ``out.inputs`` the raw
    inputs as given (for :meth:`AnyToAny.render`)."""

    def __init__(self, raw: dict[str, list[Any]], tokens: dict[str, torch.Tensor], inputs: dict[str, list[Any]],
                 batched: bool):
        self.raw, self.tokens, self.inputs, self.batched = raw, tokens, inputs, batched

    def __getitem__(self, key: str) -> Any:
        if key not in self.raw:
            raise KeyError(f"{key!r} was not generated; outputs: {', '.join(self.raw)}")
        return self.raw[key] if self.batched else self.raw[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"AnyToAnyOutput({', '.join(self.raw)}; batch={len(next(iter(self.raw.values()), []))})"
