"""Super-resolution chaining: a base model generates at its resolution, a super-resolution model (such as the
released ``EPFL-VILAB/4M-7-SR_L_CC12M``) refines the same modalities at a higher one.

The SR model takes the base model's outputs (token ids at 224) and the original inputs as conditions and
generates each modality's higher-resolution variant: the modality whose reference alias is the same name at
another ``@<size>`` (``tok_rgb@224`` → ``tok_rgb@448``, fourm name ``tok_rgb_448``). Both resolutions decode with
the same tokenizer (the released tokenizers cover 224–448).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .compat.ml4m.table import base_name
from .generation import GenerationError, TargetConfig
from .pipeline import AnyToAny, AnyToAnyOutput


def high_resolution_twin(base: AnyToAny, sr: AnyToAny, name: str) -> str:
    """The SR model's modality refining the base model's ``name`` (matched through reference aliases)."""
    spec = base.modalities[base.resolve(name, as_target=True)]
    keys = {base_name(a) for a in spec.aliases if "@" in a}
    if not keys:
        raise GenerationError(f"{spec.name!r} has no resolution alias (such as 'tok_rgb@224'): the SR model's "
                              f"higher-resolution variant of it cannot be found")
    twins = [s.name for s in sr.modalities.specs if s.decoder and s.name != spec.name
             and any(base_name(a) in keys and a not in keys for a in s.aliases)]
    if not twins:
        can = ", ".join(s.name for s in sr.modalities.specs if s.decoder)
        raise GenerationError(f"the super-resolution model has no higher-resolution variant of {spec.name!r} "
                              f"(aliases {sorted(keys)}); it generates: {can}")
    return twins[0]


def generate_super_resolved(base: AnyToAny, sr: AnyToAny, inputs: Mapping[str, Any],
                            targets: Sequence[str | TargetConfig] | str, *, seed: int | None = None,
                            base_options: Mapping[str, Any] | None = None,
                            sr_options: Mapping[str, Any] | None = None, decode: bool = True,
                            decode_errors: str = "raise") -> tuple[AnyToAnyOutput, AnyToAnyOutput]:
    """(base outputs, SR outputs): ``base`` generates ``targets`` from ``inputs``; ``sr`` then generates their
    higher-resolution twins conditioned on ``inputs`` (those it knows) plus every base output.

    ``base_options`` / ``sr_options``: generation options of each stage (``steps``, ``temperature``, ...; the
    reference's demo uses fewer steps and lower temperatures for the SR stage)."""
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    low = base(inputs, targets, seed=seed, decode=decode, decode_errors=decode_errors, **dict(base_options or {}))
    cond: dict[str, Any] = {k: v for k, v in inputs.items() if k in sr.modalities}
    for name, tokens in low.tokens.items():
        if name in sr.modalities and sr.modalities[name].encoder:
            cond[name] = tokens
    names = [t.modality if isinstance(t, TargetConfig) else t for t in targets]
    high_targets = [high_resolution_twin(base, sr, n) for n in names]
    high = sr(cond, high_targets, seed=seed, decode=decode, decode_errors=decode_errors, **dict(sr_options or {}))
    return low, high
