"""How to generate one target modality: scheme, steps, schedules, temperature, filtering, guidance.

:class:`TargetConfig` is plain data; :func:`resolve_target` fills the defaults that depend on the
modality's kind (``image``/``vector`` → MaskGIT, ``sequence`` → autoregressive) and validates everything
against the model's :class:`~fourm_registry.ModalitySpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fourm_registry import ModalitySpec

from ..kinds import ADAPTERS, adapter_for
from .errors import GenerationError
from .schedules import GUIDANCE_SCHEDULES, TOKEN_SCHEDULES, check_temperature_schedule

SCHEMES = ("maskgit", "roar", "autoregressive")

#: Defaults per modality kind (each kind adapter's ``generation_defaults``), applied where a TargetConfig leaves
#: a field as None.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(a.generation_defaults) for name, a in ADAPTERS.items()
                                            if a.generation_defaults}


def _weights(value: Mapping[str, float] | None) -> dict[str, float] | None:
    return None if value is None else {str(k): float(v) for k, v in dict(value).items()}


#: fields every kind fills the same way when a TargetConfig leaves them as None
_COMMON_DEFAULTS: dict[str, Any] = {"temperature_schedule": "constant", "guidance_schedule": "constant", "top_k": 0,
                                    "top_p": 0.0, "stop_at_eos": True}


@attrs.frozen(kw_only=True)
class TargetConfig:
    """Generation settings of one target; ``None`` means "not set": the call-wide settings of
    :class:`~fourm_core.pipeline.AnyToAny` may fill it, else the default for the modality's kind. A field set
    explicitly, even to its default value, is never overridden.

    * ``scheme``: ``maskgit`` (commit the most confident tokens each step), ``roar`` (random order: commit
      random positions each step), ``autoregressive`` (sequences, left to right with a KV cache).
    * ``steps`` / ``token_schedule`` (``cosine`` | ``linear`` | ``cosine_late``, see
      :func:`~fourm_core.generation.schedules.token_schedule`): MaskGIT / ROAR steps. Default: ``cosine`` for
      MaskGIT, ``linear`` for ROAR (as the released 4M sampler).
    * ``temperature`` / ``temperature_schedule`` (``constant`` | ``linear`` | ``onex:MIN:POWER``; default
      ``constant``), ``top_k``, ``top_p``: sampling (temperature 0 = greedy).
    * ``guidance``: classifier-free guidance scale (1 = none; ints are fine), with ``guidance_schedule``
      (``constant`` | ``cosine``). ``guidance_conditions``: the modalities removed in the unconditional pass
      (default: every condition present when this target starts).
    * ``condition_weights``: weighted multi-condition guidance, ``{modality: weight}``:
      ``logits = uncond + sum_i w_i (cond_i - uncond)`` where ``cond_i`` sees only modality ``i`` (plus the
      conditions not listed) and ``uncond`` none of the listed ones. Overrides ``guidance``. (Several
      conditions of one modality, negative ones included: ``Sampler.generate(conditions=...)``.)
    * ``max_new_tokens`` (autoregressive; default ``max_length - 1``), ``stop_at_eos`` (default True: stop a
      row at ``[EOS]`` or at the closing sentinel; False generates exactly ``max_new_tokens``).
    * ``vocab_limit``: only ids below it are generated (a tokenizer with fewer codes than the model's table;
      :class:`~fourm_core.pipeline.AnyToAny` sets it from the target's codec).
    * ``grammar`` (sequences): constrained decoding with the text grammar of the modality's serializer
      (:mod:`fourm_core.generation.grammar`): a compiled ``TokenAutomaton``; ``None`` (default): the
      serializer's grammar where the caller knows the codec (:func:`~fourm_core.generation.grammar.
      with_codec_grammar`), else none; ``True``: required; ``False``: off (the unconstrained ids, exactly).
    """

    modality: str
    scheme: str | None = None
    steps: int | None = None
    token_schedule: str | None = None
    temperature: float | None = None
    temperature_schedule: str | None = None
    top_k: int | float | None = None
    top_p: float | None = None
    guidance: float | None = None
    guidance_schedule: str | None = None
    guidance_conditions: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v))
    condition_weights: dict[str, float] | None = attrs.field(default=None, converter=_weights)
    max_new_tokens: int | None = None
    stop_at_eos: bool | None = None
    vocab_limit: int | None = None
    grammar: Any = None

    def replace(self, **changes: Any) -> TargetConfig:
        return attrs.evolve(self, **changes)

    def unset_fields(self) -> set[str]:
        """Names of the fields left as None (what call-wide settings may fill)."""
        return {f.name for f in attrs.fields(TargetConfig) if getattr(self, f.name) is None}


def resolve_target(cfg: TargetConfig, spec: ModalitySpec) -> TargetConfig:
    """``cfg`` with kind defaults filled in and every field checked against ``spec``."""
    if not spec.decoder:
        raise GenerationError(
            f"cannot generate {spec.name!r}: it is a {spec.kind!r} modality the model only reads as input "
            f"(encoder-only); ask for a modality with a decoder, e.g. its tokenized twin")
    kind = adapter_for(spec)
    defaults = dict(KIND_DEFAULTS[spec.kind])
    if (cfg.scheme or defaults.get("scheme")) == "roar":
        defaults["token_schedule"] = "linear"  # ROAR decodes in even chunks unless told otherwise
    defaults.update(_COMMON_DEFAULTS)
    filled = {k: (getattr(cfg, k) if getattr(cfg, k) is not None else v) for k, v in defaults.items()}
    cfg = attrs.evolve(cfg, modality=spec.name, **filled)
    if cfg.scheme not in SCHEMES:
        raise GenerationError(f"target {spec.name!r}: unknown scheme {cfg.scheme!r}; choose one of {', '.join(SCHEMES)}")
    if kind.autoregressive and cfg.scheme != "autoregressive":
        raise GenerationError(f"target {spec.name!r} is a sequence: only scheme 'autoregressive' applies, got {cfg.scheme!r}")
    if not kind.autoregressive and cfg.scheme == "autoregressive":
        raise GenerationError(f"target {spec.name!r} is a {spec.kind!r} modality: use 'maskgit' or 'roar', not 'autoregressive'")
    if cfg.token_schedule not in TOKEN_SCHEDULES:
        raise GenerationError(f"target {spec.name!r}: unknown token schedule {cfg.token_schedule!r}; choose {', '.join(TOKEN_SCHEDULES)}")
    if cfg.guidance_schedule not in GUIDANCE_SCHEDULES:
        raise GenerationError(f"target {spec.name!r}: unknown guidance schedule {cfg.guidance_schedule!r}; "
                              f"choose {', '.join(GUIDANCE_SCHEDULES)}")
    try:
        check_temperature_schedule(cfg.temperature_schedule)
    except GenerationError as exc:
        raise GenerationError(f"target {spec.name!r}: {exc}") from None
    if not isinstance(cfg.steps, int) or cfg.steps < 1:
        raise GenerationError(f"target {spec.name!r}: steps must be a positive int, got {cfg.steps!r}")
    if cfg.temperature < 0:
        raise GenerationError(f"target {spec.name!r}: temperature must be >= 0, got {cfg.temperature}")
    if not 0 <= cfg.top_p <= 1:
        raise GenerationError(f"target {spec.name!r}: top_p must be in [0, 1], got {cfg.top_p}")
    if cfg.top_k < 0:
        raise GenerationError(f"target {spec.name!r}: top_k must be >= 0, got {cfg.top_k}")
    if cfg.vocab_limit is not None and (not isinstance(cfg.vocab_limit, int) or cfg.vocab_limit < 1):
        raise GenerationError(f"target {spec.name!r}: vocab_limit must be a positive int, got {cfg.vocab_limit!r}")
    if cfg.grammar is not None and not isinstance(cfg.grammar, bool) and not hasattr(cfg.grammar, "for_vocab"):
        raise GenerationError(f"target {spec.name!r}: grammar must be None, True, False or a compiled TokenAutomaton "
                              f"(fourm_core.generation.grammar.automaton_for), got {type(cfg.grammar).__name__}")
    if cfg.grammar not in (None, False) and not kind.autoregressive:
        raise GenerationError(f"target {spec.name!r} is a {spec.kind!r} modality: a text grammar applies to sequences only")
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise GenerationError(f"target {spec.name!r}: max_new_tokens must be >= 1, got {cfg.max_new_tokens}")
    if kind.autoregressive:
        limit = spec.max_length - 1
        n = cfg.max_new_tokens if cfg.max_new_tokens is not None else limit
        if n > limit:
            raise GenerationError(f"target {spec.name!r}: max_new_tokens {n} exceeds the modality's max_length - 1 = {limit}")
        cfg = attrs.evolve(cfg, max_new_tokens=n)
    return cfg
