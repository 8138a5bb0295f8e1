"""Learning-rate and weight-decay schedules, as functions of the tokens seen (inputs + targets, all processes).

Learning rate (``schedule.lr``), each after a linear warm-up from 0 over ``warmup_tokens``:

* ``cosine``: from ``lr`` to ``min_lr`` at ``total_tokens`` (half a cosine period);
* ``linear``: straight from ``lr`` to ``min_lr`` at ``total_tokens``;
* ``constant``: ``lr`` until the end;
* ``inverse_sqrt``: ``lr / sqrt((t + T) / T)`` with ``t`` the tokens since the warm-up ended and ``T`` the
  time scale (``timescale_tokens``, default the warm-up length), then, over the last ``cooldown_tokens``, a
  straight line from the value reached to ``min_lr`` at ``total_tokens``. With a time scale equal to the
  warm-up this is the classic ``lr * sqrt(warmup / tokens)``; the cool-down lets an open-ended run be ended
  well at any length (a fresh cool-down from an intermediate checkpoint).

Weight decay (``schedule.weight_decay``), applied to the parameter groups that decay (the others stay at 0),
without warm-up: ``constant`` (``optimizer.weight_decay`` throughout), ``cosine`` or ``linear`` from
``optimizer.weight_decay`` to ``schedule.weight_decay_end`` at ``total_tokens``.
"""

from __future__ import annotations

import math

import attrs

from ..config import TrainConfig, schedule_problem


def _anneal(kind: str, start: float, end: float, progress: float) -> float:
    """``start`` → ``end`` as ``progress`` goes 0 → 1 (clamped): cosine, linear, or constant (``start``)."""
    progress = min(1.0, max(0.0, progress))
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return start + (end - start) * progress
    return start


def lr_at(tokens: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` tokens, then cosine from ``lr`` to ``min_lr`` at ``total`` tokens."""
    return LRSchedule(kind="cosine", lr=lr, min_lr=min_lr, warmup=warmup, total=total)(tokens)


@attrs.frozen(kw_only=True)
class LRSchedule:
    """The learning rate at a number of tokens seen (see the module docstring for the shapes)."""

    kind: str = "cosine"
    lr: float
    min_lr: float = 0.0
    warmup: int = 0
    total: int
    cooldown: int = 0
    #: inverse_sqrt time scale in tokens (``None``: the warm-up length)
    timescale: int | None = None

    def __attrs_post_init__(self) -> None:
        problem = schedule_problem(self.kind, "constant", warmup=self.warmup, cooldown=self.cooldown,
                                   timescale=self.timescale)
        if problem:
            raise ValueError(problem)

    def __call__(self, tokens: int) -> float:
        if self.warmup > 0 and tokens < self.warmup:
            return self.lr * tokens / self.warmup
        if self.kind == "inverse_sqrt":
            return self._inverse_sqrt(tokens)
        if self.total <= self.warmup:
            return self.lr
        return _anneal(self.kind, self.lr, self.min_lr, (tokens - self.warmup) / (self.total - self.warmup))

    def _inverse_sqrt(self, tokens: int) -> float:
        scale = float(self.timescale or self.warmup)
        start_cool = max(self.warmup, self.total - self.cooldown)
        t = min(tokens, start_cool) - self.warmup
        value = self.lr / math.sqrt((t + scale) / scale)
        if self.cooldown <= 0 or tokens <= start_cool:
            return value
        return _anneal("linear", value, self.min_lr, (tokens - start_cool) / max(self.total - start_cool, 1))


@attrs.frozen(kw_only=True)
class WDSchedule:
    """The weight decay of the decaying parameter groups at a number of tokens seen."""

    kind: str = "constant"
    start: float
    end: float
    total: int

    def __attrs_post_init__(self) -> None:
        problem = schedule_problem("cosine", self.kind, warmup=0, cooldown=0, timescale=None)
        if problem:
            raise ValueError(problem)

    def __call__(self, tokens: int) -> float:
        return _anneal(self.kind, self.start, self.end, tokens / max(self.total, 1))


def schedules_for(cfg: TrainConfig, total_tokens: int) -> tuple[LRSchedule, WDSchedule]:
    """The learning-rate and weight-decay schedules of a run whose schedules end at ``total_tokens``."""
    sc, opt = cfg.schedule, cfg.optimizer
    lr = LRSchedule(kind=sc.lr, lr=opt.lr, min_lr=opt.min_lr, warmup=sc.warmup_tokens, total=total_tokens,
                    cooldown=sc.cooldown_tokens, timescale=sc.timescale_tokens)
    end = opt.weight_decay if sc.weight_decay_end is None else sc.weight_decay_end
    return lr, WDSchedule(kind=sc.weight_decay, start=opt.weight_decay, end=end, total=total_tokens)
