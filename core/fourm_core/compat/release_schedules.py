"""Check :func:`fourm_core.generation.build_chained_schedule` against recorded schedules of the released 4M
sampler.

The file is JSON ``{"settings": [{"name", "kwargs", "steps" | "error"}, ...]}``: ``kwargs`` are the
arguments of the released sampler's schedule builder (``cond_domains``, ``target_domains``, ...), ``steps``
its per-step output (``target_domain``, ``scheme``, ``num_tokens``, ``temperature``, ``cfg_scale``,
``cfg_cond_domains``), or ``error`` (``{"type", "message"}``) the exception it raised.

>>> passed, summary = verify_schedules("schedules.json")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fourm_registry.strict import check_keys

from ..errors import GenerationError

#: builder arguments a recorded entry may carry (the released builder's names)
KWARGS = ("cond_domains", "target_domains", "tokens_per_target", "autoregression_schemes", "decoding_steps",
          "token_decoding_schedules", "temps", "temp_schedules", "cfg_scales", "cfg_schedules",
          "cfg_grow_conditioning")
FIELDS = ("target_domain", "scheme", "num_tokens", "temperature", "cfg_scale", "cfg_cond_domains")
#: temperatures and guidance scales agree to this (relative and absolute) tolerance
TOLERANCE = 1e-9


def _any_cfg_schedule(name: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda kw: name in list(kw.get("cfg_schedules") or [])


def _int_scale(kw: Mapping[str, Any]) -> bool:
    return any(isinstance(s, int) and not isinstance(s, bool) for s in kw.get("cfg_scales") or [])


#: exceptions of the released builder that fourm replaces by a working behaviour on purpose:
#: ``(exception type, when it applies to the entry's arguments, why)``. An entry recording one of these
#: passes when our builder returns a valid plan; any other recorded exception must be an exception here too.
REPLACED_ERRORS: tuple[tuple[str, Callable[[Mapping[str, Any]], bool], str], ...] = (
    ("NotImplementedError", _any_cfg_schedule("cosine"),
     "the released builder names a 'cosine' guidance schedule but raises; fourm implements it (a half-cosine "
     "ramp from 1 to the scale over the share of tokens committed)"),
    ("UnboundLocalError", _int_scale,
     "the released builder's 'constant' guidance schedule handles float and list scales only and fails on an "
     "int; fourm takes an int scale as the float of the same value"),
)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_close(x, y) for x, y in zip(a, b)))
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _compare(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> str | None:
    """None when the plans agree, else the first difference."""
    if len(ours) != len(ref):
        return f"{len(ours)} steps, the reference has {len(ref)}"
    for i, (a, b) in enumerate(zip(ours, ref)):
        for f in FIELDS:
            va, vb = a[f], b.get(f)
            same = (list(va) == list(vb or []) if f == "cfg_cond_domains"
                    else va == vb if f in ("target_domain", "scheme", "num_tokens") else _close(va, vb))
            if not same:
                return f"step {i}: {f} = {va!r}, the reference has {vb!r}"
    return None


def _check_entry(entry: Mapping[str, Any]) -> tuple[bool, str]:
    from ..generation import build_chained_schedule

    kwargs = dict(entry.get("kwargs") or {})
    check_keys(kwargs, KWARGS, f"schedule setting {entry.get('name')!r} kwargs", error=GenerationError)
    try:
        ours = [s.as_dict() for s in build_chained_schedule(**kwargs)]
        error = None
    except GenerationError as exc:
        ours, error = None, exc
    if "error" in entry:
        kind = (entry["error"] or {}).get("type", "")
        replaced = [why for t, applies, why in REPLACED_ERRORS if t == kind and applies(kwargs)]
        if replaced:
            if error is not None:
                return False, f"the reference raised {kind} (replaced on purpose: {replaced[0]}) but ours raised: {error}"
            return True, f"replaced reference {kind}: {len(ours)} steps"
        if error is None:
            return False, f"the reference raised {kind} ({entry['error'].get('message', '')}); ours returned {len(ours)} steps"
        return True, f"both reject it ({kind}; ours: {error})"
    if error is not None:
        return False, f"ours raised: {error}"
    diff = _compare(ours, list(entry.get("steps") or []))
    if diff is None and "num_steps" in entry and entry["num_steps"] != len(ours):
        diff = f"{len(ours)} steps, the reference's num_steps is {entry['num_steps']}"
    return (True, f"{len(ours)} steps equal") if diff is None else (False, diff)


def verify_schedules(path: str | os.PathLike) -> tuple[bool, dict[str, Any]]:
    """Run every ``settings`` entry of the JSON file at ``path`` through
    :func:`fourm_core.generation.build_chained_schedule` and compare per step.

    Returns ``(passed, summary)``: ``summary = {"entries": n, "passed": k, "failed": [names],
    "results": {name: {"passed": bool, "detail": str}}}``."""
    p = Path(path)
    if not p.is_file():
        raise GenerationError(f"schedule file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GenerationError(f"schedule file {str(p)!r} is not JSON: {exc}") from exc
    settings = data.get("settings") if isinstance(data, Mapping) else None
    if not isinstance(settings, list):
        raise GenerationError(f"schedule file {str(p)!r} has no 'settings' list")
    results: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(settings):
        name = str(entry.get("name", f"#{i}"))
        ok, detail = _check_entry(entry)
        results[name] = {"passed": ok, "detail": detail}
    failed = [n for n, r in results.items() if not r["passed"]]
    summary = {"entries": len(results), "passed": len(results) - len(failed), "failed": failed, "results": results}
    return not failed and bool(results), summary
