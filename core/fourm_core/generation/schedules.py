"""Token, temperature and guidance schedules of iterative decoding (MaskGIT / ROAR).

A *token schedule* says how many tokens are committed at each step and sums to the number of tokens to
generate. A *temperature schedule* and a *guidance schedule* give one value per step of a token schedule.
``cosine`` / ``linear`` token schedules and ``constant`` / ``linear`` / ``onex:MIN:POWER`` temperatures compute
what the released 4M models' sampler computes for the same names, so recipes tuned for those models carry
over; the float operations follow the same order, so the values agree to the last bit or nearly so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import GenerationError

TOKEN_SCHEDULES = ("cosine", "linear", "cosine_late")
TEMPERATURE_SCHEDULES = ("constant", "linear", "onex:MIN:POWER")
GUIDANCE_SCHEDULES = ("constant", "cosine")
#: temperatures never go below this (0 is greedy only when asked for directly, with a constant schedule)
MIN_TEMPERATURE = 1e-9


def token_schedule(num_tokens: int, num_steps: int, schedule: str = "cosine") -> list[int]:
    """Number of tokens committed at each of ``num_steps`` steps; sums to ``num_tokens``.

    * ``cosine`` (MaskGIT, the 4M default): with ``s_i = 0.5 (1 + cos(pi i / T))`` for ``i = 0 .. T-1``, step
      ``i < T-1`` commits ``round(N (s_i - s_{i+1}))`` tokens (half to even) and the last step the remainder.
      Few tokens first and last, many in the middle. With more steps than tokens some steps commit 0 (the
      sampler skips them). Where the rounded counts add up to more than ``N`` (the released sampler's last
      step would then be negative, e.g. 16 tokens in 8 steps) the excess comes off the latest steps.
    * ``linear``: boundaries ``int(i N / T)``, their differences sorted largest first; trailing zero steps are
      dropped, so ``N < T`` gives ``N`` steps of one token.
    * ``cosine_late``: after step ``t`` (1-based) ``floor(N cos(pi/2 t/T))`` tokens are still masked, so early
      steps commit few tokens and late steps many; a step that would commit nothing borrows one token from
      the largest step and ``T`` is capped at ``N`` (every step commits at least one token). Useful when the
      first, least informed steps should decide as little as possible.
    """
    if num_tokens < 0:
        raise GenerationError(f"token schedule: num_tokens must be >= 0, got {num_tokens}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise GenerationError(f"token schedule: num_steps must be an int >= 1, got {num_steps!r}")
    if schedule not in TOKEN_SCHEDULES:
        raise GenerationError(f"unknown token schedule {schedule!r}; choose one of {', '.join(TOKEN_SCHEDULES)}")
    if num_tokens == 0:
        return []
    if schedule == "cosine":
        left = [0.5 * (1.0 + math.cos(math.pi * i / num_steps)) for i in range(num_steps)]
        counts = [round(num_tokens * (left[i] - left[i + 1])) for i in range(num_steps - 1)]
        over = sum(counts) - num_tokens
        counts.append(max(-over, 0))
        for j in reversed(range(len(counts))):  # the rounding overshot N: take the excess off the latest steps
            if over <= 0:
                break
            take = min(over, counts[j])
            counts[j] -= take
            over -= take
        return counts
    if schedule == "linear":
        step = num_tokens / num_steps
        edges = [int(i * step) for i in range(num_steps)] + [num_tokens]
        counts = sorted((edges[i + 1] - edges[i] for i in range(num_steps)), reverse=True)
        while counts and counts[-1] == 0:
            counts.pop()
        return counts
    return _cosine_late(num_tokens, num_steps)


def _cosine_late(num_tokens: int, num_steps: int) -> list[int]:
    steps = min(num_steps, num_tokens)
    remaining = [math.floor(num_tokens * math.cos(math.pi / 2 * t / steps)) for t in range(steps + 1)]
    remaining[0], remaining[-1] = num_tokens, 0
    counts = [remaining[t] - remaining[t + 1] for t in range(steps)]
    for i in range(steps):  # every step commits at least one token: borrow from the largest (latest) steps
        while counts[i] < 1:
            j = max(range(steps), key=lambda k: (counts[k], k))
            counts[j] -= 1
            counts[i] += 1
    return counts


def temperature_schedule(temperature: float, counts: Sequence[int], schedule: str = "constant") -> list[float]:
    """One temperature per step of the token schedule ``counts`` (``N = sum(counts)``, ``c_i`` the tokens
    committed up to and including step ``i``).

    * ``constant``: ``temperature`` every step.
    * ``linear``: ``temperature`` at the first step, then ``temperature (N - c_{i-1}) / N``: it falls with the
      share of tokens already committed.
    * ``onex:MIN:POWER``: a one-over-x curve ``y = 1 / x^POWER`` over ``N`` points evenly spaced on
      [1, 100], shifted and scaled to [0, 1]; step ``i`` takes ``MIN + (temperature - MIN) (1 - c_i / N) y_i``
      (the curve's first ``len(counts)`` points, not one point per token). It starts near ``temperature``,
      drops fast, and ends at ``MIN``.

    ``linear`` and ``onex`` never go below :data:`MIN_TEMPERATURE`.
    """
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0, got {temperature}")
    counts = [int(c) for c in counts]
    t = float(temperature)
    if schedule == "constant":
        return [t] * len(counts)
    total = sum(counts)
    cum = np.cumsum(counts, dtype=np.int64) if counts else np.zeros(0, dtype=np.int64)
    if schedule == "linear":
        if not counts:
            return []
        rest = [t * (total - int(c)) / total for c in cum[:-1]]
        return [max(v, MIN_TEMPERATURE) for v in [t, *rest]]
    if schedule.startswith("onex"):
        t_min, power = _parse_onex(schedule)
        if not counts:
            return []
        x = np.linspace(1, 100, num=total)
        y = 1.0 / (x ** power)
        y = y - y.min()
        top = y.max()
        y = y / top if top > 0 else np.ones_like(y)  # one token: the curve is a single point, taken as 1
        frac = cum / total
        return [max(float(t_min + (t - t_min) * ((1 - f) * v)), MIN_TEMPERATURE) for v, f in zip(y, frac)]
    raise GenerationError(f"unknown temperature schedule {schedule!r}; choose constant, linear or onex:MIN:POWER")


def _parse_onex(schedule: str) -> tuple[float, float]:
    parts = schedule.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        return float(parts[1]), float(parts[2])
    except ValueError:
        raise GenerationError(f"temperature schedule {schedule!r} must look like 'onex:MIN:POWER', "
                              f"e.g. 'onex:0.5:0.5'") from None


def check_temperature_schedule(schedule: str) -> None:
    """Raise :class:`GenerationError` unless ``schedule`` names a temperature schedule."""
    if schedule in ("constant", "linear"):
        return
    if schedule.startswith("onex"):
        _parse_onex(schedule)
        return
    raise GenerationError(f"unknown temperature schedule {schedule!r}; choose constant, linear or onex:MIN:POWER")


def guidance_schedule(scale: float | Sequence[float], counts: Sequence[int],
                      schedule: str = "constant") -> list[float] | list[tuple[float, ...]]:
    """One guidance scale per step of the token schedule ``counts``. ``scale`` is one number (classifier-free
    guidance) or one weight per condition (multi-condition guidance, a tuple per step).

    * ``constant``: ``scale`` every step (an int is taken as a float).
    * ``cosine``: rises from no guidance to ``scale`` along half a cosine over the share of tokens committed:
      step ``i`` uses ``1 + (scale - 1) (1 - cos(pi c_i / N)) / 2`` (per weight, ``c_i`` the tokens committed up
      to and including step ``i``), so the first, least informed steps are barely guided, the last step uses
      the full ``scale``. (The released 4M sampler names this schedule but does not implement it.)
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float, Sequence)) or isinstance(scale, str):
        raise GenerationError(f"guidance scale must be a number or a list of numbers (one per condition), "
                              f"got {scale!r}")
    multi = isinstance(scale, Sequence)
    weights = [float(w) for w in scale] if multi else [float(scale)]
    if schedule == "constant":
        per_step = [tuple(weights)] * len(counts)
    elif schedule == "cosine":
        total = max(sum(int(c) for c in counts), 1)
        cum = np.cumsum([int(c) for c in counts]) if counts else []
        ramps = [0.5 * (1.0 - math.cos(math.pi * int(c) / total)) for c in cum]
        per_step = [tuple(1.0 + (w - 1.0) * r for w in weights) for r in ramps]
    else:
        raise GenerationError(f"unknown guidance schedule {schedule!r}; choose one of {', '.join(GUIDANCE_SCHEDULES)}")
    return list(per_step) if multi else [s[0] for s in per_step]
