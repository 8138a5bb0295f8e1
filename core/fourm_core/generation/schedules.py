"""Token, temperature and guidance schedules for iterative decoding (MaskGIT / ROAR).

A *token schedule* says how many tokens are committed at each step; it always sums to the number of tokens
to generate and never contains a zero (every step decodes at least one token). A *temperature schedule*
gives one sampling temperature per step.
"""

from __future__ import annotations

import math

from .errors import GenerationError

TOKEN_SCHEDULES = ("cosine", "linear")


def token_schedule(num_tokens: int, num_steps: int, schedule: str = "cosine") -> list[int]:
    """Number of tokens committed at each of ``num_steps`` steps; sums to ``num_tokens``.

    ``cosine`` (MaskGIT): after step ``t`` (1-based) a fraction ``cos(pi/2 * t/T)`` of the tokens is
    still masked, so early steps commit few tokens and late steps many. ``linear``: equal shares (the
    remainder goes to the first steps). ``num_steps`` is capped at ``num_tokens``.
    """
    if num_tokens < 0:
        raise GenerationError(f"token schedule: num_tokens must be >= 0, got {num_tokens}")
    if num_steps < 1:
        raise GenerationError(f"token schedule: num_steps must be >= 1, got {num_steps}")
    if schedule not in TOKEN_SCHEDULES:
        raise GenerationError(f"unknown token schedule {schedule!r}; choose one of {', '.join(TOKEN_SCHEDULES)}")
    if num_tokens == 0:
        return []
    steps = min(num_steps, num_tokens)
    if schedule == "linear":
        base, rest = divmod(num_tokens, steps)
        return [base + (1 if i < rest else 0) for i in range(steps)]
    remaining = [math.floor(num_tokens * math.cos(math.pi / 2 * t / steps)) for t in range(steps + 1)]
    remaining[0], remaining[-1] = num_tokens, 0
    counts = [remaining[t] - remaining[t + 1] for t in range(steps)]
    # Every step must commit at least one token: borrow from the largest steps (the last ones).
    for i in range(steps):
        while counts[i] < 1:
            j = max(range(steps), key=lambda k: (counts[k], k))
            counts[j] -= 1
            counts[i] += 1
    return counts


def temperature_schedule(temperature: float, counts: list[int], schedule: str = "constant") -> list[float]:
    """One temperature per step of a token schedule ``counts``.

    ``constant``: ``temperature`` every step. ``linear``: decays linearly from ``temperature`` to 0 with
    the fraction of tokens already decoded. ``onex:MIN:POWER``: decays from ``temperature`` to ``MIN``
    following ``(1 - progress) ** POWER``.
    """
    if temperature < 0:
        raise GenerationError(f"temperature must be >= 0, got {temperature}")
    total = max(sum(counts), 1)
    done = [sum(counts[:i]) / total for i in range(len(counts))]
    if schedule == "constant":
        return [float(temperature)] * len(counts)
    if schedule == "linear":
        return [float(temperature) * (1.0 - d) for d in done]
    if schedule.startswith("onex"):
        parts = schedule.split(":")
        try:
            t_min, power = float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise GenerationError(f"temperature schedule {schedule!r} must look like 'onex:MIN:POWER', e.g. 'onex:0.5:1.0'") from None
        return [t_min + (float(temperature) - t_min) * (1.0 - d) ** power for d in done]
    raise GenerationError(f"unknown temperature schedule {schedule!r}; choose constant, linear or onex:MIN:POWER")
