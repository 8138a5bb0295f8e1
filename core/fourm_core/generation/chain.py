"""Per-step generation plans: what each decoding step of a chain of targets does.

:func:`plan_target` turns one target's settings into its steps (tokens to commit, temperature, guidance
scale, the conditions guidance removes); the sampler decodes by these plans. :func:`build_chained_schedule`
builds the plan of a whole chain from the argument lists the released 4M sampler takes
(``cond_domains``, ``target_domains``, ``tokens_per_target``, ...), step for step what that sampler's
schedule builder returns for the same arguments, except where that builder fails:

* an ``int`` guidance scale is taken as a float (that builder fails on it);
* the ``cosine`` guidance schedule is implemented (:func:`~fourm_core.generation.schedules.guidance_schedule`;
  that builder raises ``NotImplementedError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .errors import GenerationError
from .schedules import check_temperature_schedule, guidance_schedule, temperature_schedule, token_schedule
from .targets import SCHEMES


def _scale(value: Any) -> float | tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value)
    return float(value)


@attrs.frozen(kw_only=True)
class ScheduleStep:
    """One decoding step of a chain.

    ``num_tokens``: tokens committed by this step (``None`` for an autoregressive target, decoded in one
    entry); ``cfg_scale``: guidance scale (a tuple: one weight per condition); ``cfg_cond_domains``: the
    conditions removed in the unconditional pass of guidance."""

    target_domain: str
    scheme: str
    num_tokens: int | None
    temperature: float
    cfg_scale: float | tuple[float, ...] = attrs.field(converter=_scale)
    cfg_cond_domains: tuple[str, ...] = attrs.field(converter=tuple)

    def as_dict(self) -> dict[str, Any]:
        """The step as a plain dict (lists for the tuples)."""
        d = attrs.asdict(self)
        d["cfg_cond_domains"] = list(self.cfg_cond_domains)
        if isinstance(self.cfg_scale, tuple):
            d["cfg_scale"] = list(self.cfg_scale)
        return d


def plan_target(modality: str, scheme: str, num_tokens: int, *, steps: int | None, token_schedule_name: str | None,
                temperature: float, temperature_schedule_name: str, guidance: float | Sequence[float],
                guidance_schedule_name: str, cond_domains: Sequence[str]) -> list[ScheduleStep]:
    """The steps of one target.

    ``maskgit`` uses ``token_schedule_name``; ``roar`` always decodes with the ``linear`` token schedule unless
    ``token_schedule_name`` names another one explicitly (pass ``None`` for the default). ``autoregressive``
    gives one step (``num_tokens`` None) at ``temperature`` with the scale ``guidance`` as given. Temperatures
    and guidance follow their schedules per step; the three lists are cut to the shortest (a temperature
    schedule can be shorter than a token schedule with empty steps)."""
    conds = tuple(cond_domains)
    check_temperature_schedule(temperature_schedule_name)
    if scheme == "autoregressive":
        guidance_schedule(guidance, [1], guidance_schedule_name)  # validates the name and the scale
        return [ScheduleStep(target_domain=modality, scheme=scheme, num_tokens=None, temperature=float(temperature),
                             cfg_scale=guidance, cfg_cond_domains=conds)]
    if scheme not in SCHEMES:
        raise GenerationError(f"target {modality!r}: unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise GenerationError(f"target {modality!r}: decoding steps must be a positive int, got {steps!r}")
    name = token_schedule_name if token_schedule_name is not None else ("linear" if scheme == "roar" else "cosine")
    counts = token_schedule(num_tokens, steps, name)
    temps = temperature_schedule(temperature, counts, temperature_schedule_name)
    scales = guidance_schedule(guidance, counts, guidance_schedule_name)
    return [ScheduleStep(target_domain=modality, scheme=scheme, num_tokens=n, temperature=t, cfg_scale=s,
                         cfg_cond_domains=conds) for n, t, s in zip(counts, temps, scales)]


_LISTS = ("target_domains", "tokens_per_target", "autoregression_schemes", "decoding_steps",
          "token_decoding_schedules", "temps", "temp_schedules", "cfg_scales", "cfg_schedules")


def build_chained_schedule(cond_domains: Sequence[str], target_domains: Sequence[str],
                           tokens_per_target: Sequence[int], autoregression_schemes: Sequence[str],
                           decoding_steps: Sequence[int | None], token_decoding_schedules: Sequence[str | None],
                           temps: Sequence[float], temp_schedules: Sequence[str],
                           cfg_scales: Sequence[float | Sequence[float]], cfg_schedules: Sequence[str],
                           cfg_grow_conditioning: bool = False) -> list[ScheduleStep]:
    """The per-step plan of a chain of targets, from the released 4M sampler's argument lists (one entry per
    target in each list).

    ``roar`` targets decode with the ``linear`` token schedule whatever ``token_decoding_schedules`` says (as
    that sampler does); autoregressive targets ignore steps and token schedules. ``cfg_grow_conditioning``:
    each finished MaskGIT / ROAR target joins the conditions guidance removes for the later targets (an
    autoregressive target does not, as in that sampler)."""
    lists = dict(zip(_LISTS, (target_domains, tokens_per_target, autoregression_schemes, decoding_steps,
                              token_decoding_schedules, temps, temp_schedules, cfg_scales, cfg_schedules)))
    n = len(target_domains)
    short = {k: len(v) for k, v in lists.items() if len(v) < n}
    if short:
        raise GenerationError(f"build_chained_schedule: {n} target_domains but only {short} entries in "
                              f"{', '.join(short)}; give one entry per target")
    conds = list(cond_domains)
    plan: list[ScheduleStep] = []
    for i, target in enumerate(target_domains):
        scheme = autoregression_schemes[i]
        token_name = "linear" if scheme == "roar" else token_decoding_schedules[i]
        plan += plan_target(target, scheme, tokens_per_target[i], steps=decoding_steps[i],
                            token_schedule_name=token_name, temperature=temps[i],
                            temperature_schedule_name=temp_schedules[i], guidance=cfg_scales[i],
                            guidance_schedule_name=cfg_schedules[i], cond_domains=conds)
        if cfg_grow_conditioning and scheme != "autoregressive":
            conds.append(target)
    return plan


def chained_targets(cond_domains: Sequence[str], target_domains: Sequence[str],
                    autoregression_schemes: Sequence[str], decoding_steps: Sequence[int | None],
                    token_decoding_schedules: Sequence[str | None], temps: Sequence[float],
                    temp_schedules: Sequence[str], cfg_scales: Sequence[float | Sequence[float]],
                    cfg_schedules: Sequence[str], cfg_grow_conditioning: bool = False,
                    tokens_per_target: Sequence[int] | None = None) -> list[Any]:
    """The same chain as :func:`build_chained_schedule` as :class:`~fourm_core.generation.TargetConfig` objects
    for :meth:`Sampler.generate` / :class:`~fourm_core.pipeline.AnyToAny` (modality names as the model knows
    them). Each target's guided conditions are set explicitly, as that builder grows them; a list of scales
    becomes per-condition weights over ``cond_domains``. ``tokens_per_target`` is accepted for symmetry and
    not used: the sampler decodes each target's own number of tokens."""
    from .targets import TargetConfig

    conds = list(cond_domains)
    out = []
    for i, target in enumerate(target_domains):
        scheme = autoregression_schemes[i]
        scale = cfg_scales[i]
        weights = None
        if isinstance(scale, (list, tuple)):
            if len(scale) != len(conds):
                raise GenerationError(f"target {target!r}: {len(scale)} guidance weights for {len(conds)} "
                                      f"conditions ({', '.join(conds)})")
            weights, scale = dict(zip(conds, scale)), None
        ar = scheme == "autoregressive"
        out.append(TargetConfig(
            modality=target, scheme=scheme, steps=None if ar else decoding_steps[i],
            token_schedule=None if ar else ("linear" if scheme == "roar" else token_decoding_schedules[i]),
            temperature=float(temps[i]), temperature_schedule=temp_schedules[i],
            guidance=None if scale is None else float(scale), guidance_schedule=cfg_schedules[i],
            guidance_conditions=tuple(conds), condition_weights=weights))
        if cfg_grow_conditioning and not ar:
            conds.append(target)
    return out
