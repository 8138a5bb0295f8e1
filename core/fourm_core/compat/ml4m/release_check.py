"""``verify-release``: check fourm against a release-format set (what the reference's save code writes).

A set directory may hold (each part is checked when present; the summary lists what was absent):

* ``fm/`` (a released checkpoint: flat ``config.json`` + ``model.safetensors``) with ``fm_io.safetensors`` /
  ``fm_io.json`` (one masked batch under ``input.<m>.<field>``, the reference's losses, encoder / decoder
  activations and logits; the sidecar gives the token budgets and the encoder modality order);
* ``text/serialization.json`` (+ the WordPiece file it names): modality → text serialization;
* ``schedules.json``: generation schedules;
* ``tokenizers/<name>/`` (released tokenizers with ``io.safetensors`` / ``io.json``).

Nothing here names a particular set: modalities, tolerances and calls are read from the files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from ...tokenizers.ml4m.archs import register_archs_file as register_archs  # noqa: F401 (re-export)
from .conformance import mod_dict_from_reference
from .release import load_release
from .verify import DEFAULT_TOLERANCES, unchecked, verify_forward

log = logging.getLogger(__name__)

#: tolerances of the release-set parts (float32 forward: 1e-5 absolute)
RELEASE_TOLERANCES = {"losses_abs": 1e-5, "activations_abs": 1e-5, "logits_abs": 1e-5, "nll_abs": 1e-5}


def verify_model(directory: str | Path, *, tolerances: dict[str, float] | None = None) -> tuple[bool, str]:
    """Load ``DIR/fm`` as a released checkpoint and compare its forward on ``DIR/fm_io.*``."""
    d = Path(directory)
    meta = json.loads((d / "fm_io.json").read_text())
    model = load_release(d / meta.get("model_dir", "fm"))
    names = model.ml4m_names
    io = load_file(str(d / "fm_io.safetensors"))
    md = mod_dict_from_reference(io, names, prefix="input.")
    expected = {k: v for k, v in io.items() if not k.startswith("input.")}
    tol = {**DEFAULT_TOLERANCES, **RELEASE_TOLERANCES, **(tolerances or {})}
    report = verify_forward(model, md, expected, names=names, encoder_order=meta["encoder_modality_order"],
                            num_encoder_tokens=meta.get("num_encoder_tokens"),
                            num_decoder_tokens=meta.get("num_decoder_tokens"), tolerances=tol)
    unchecked(report, expected)
    summary = f"fm {'ok' if report.passed else 'FAIL'} ({report.parts()}; worst {report.worst_where()})"
    if report.problems:
        summary += " problems: " + "; ".join(report.problems[:5])
    return report.passed, summary


def _optional(module: str, func: str) -> Callable[..., tuple[bool, str]] | None:
    import importlib

    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        return None


def _parts(d: Path) -> list[tuple[str, Callable[[], tuple[bool, str]] | None, bool]]:
    """(name, check, present) for every part of a set."""
    parts: list[tuple[str, Callable[[], tuple[bool, str]] | None, bool]] = [
        ("fm", lambda: verify_model(d), (d / "fm_io.safetensors").is_file())]
    text = _optional("fourm_core.compat.release_text", "verify_serialization")
    parts.append(("text", text and (lambda: _labelled("text", text(d))), (d / "text" / "serialization.json").is_file()))
    sched = _optional("fourm_core.compat.release_schedules", "verify_schedules")
    parts.append(("schedules", sched and (lambda: _labelled("schedules", _schedule_line(sched(d / "schedules.json")))),
                  (d / "schedules.json").is_file()))
    tok = _optional("fourm_core.tokenizers.ml4m.verify", "verify_tokenizer")
    for sub in sorted(p for p in (d / "tokenizers").glob("*") if (p / "io.safetensors").is_file()):
        parts.append((f"tokenizer {sub.name}", tok and (lambda sub=sub: _one_line(f"tokenizer {sub.name}", tok(sub))),
                      True))
    return parts


def _schedule_line(result: tuple[bool, Any]) -> tuple[bool, str]:
    passed, summary = result
    if isinstance(summary, str):
        return passed, summary
    failed = summary.get("failed", [])
    details = [f"{n}: {summary['results'][n]['detail']}" for n in failed[:3] if n in summary.get("results", {})]
    return passed, (f"{summary.get('passed')}/{summary.get('entries')} settings match"
                    + (f"; failed {', '.join(details)}" if details else ""))


def _labelled(name: str, result: tuple[bool, str]) -> tuple[bool, str]:
    passed, text = result
    return passed, f"{name} {'ok' if passed else 'FAIL'} ({' '.join(text.split())[:300]})"


def _one_line(name: str, result: tuple[bool, str]) -> tuple[bool, str]:
    """A multi-line check report as one summary part: ok, or FAIL with its problem / failing lines."""
    passed, text = result
    if passed:
        return True, f"{name} ok"
    bad = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and not ln.rstrip().endswith(" ok")]
    return False, f"{name} FAIL ({'; '.join(bad)[:300]})"


def verify_release(directory: str | Path) -> tuple[bool, str]:
    """Every part of a release-format set; (passed, one summary line). A present part whose checker is not
    installed fails; an absent part is listed as absent (at least one part must be present)."""
    d = Path(directory)
    if not d.is_dir():
        return False, f"ml4m verify-release {d}: FAIL | {d} is not a directory"
    results, absent = [], []
    for name, check, present in _parts(d):
        if not present:
            absent.append(name)
            continue
        if check is None:
            results.append((False, f"{name} FAIL (its checker is not installed)"))
            continue
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - one part failing must not hide the others
            log.debug("verify-release part %s raised", name, exc_info=True)
            results.append((False, f"{name} FAIL ({type(exc).__name__}: {exc})"))
    passed = bool(results) and all(ok for ok, _ in results)
    line = f"ml4m verify-release {d.name}: {'PASS' if passed else 'FAIL'} | " + " | ".join(s for _, s in results)
    if absent:
        line += f" | absent: {', '.join(absent)}"
    if not results:
        line += " | nothing to check"
    return passed, line
