"""``metrics.jsonl``: one JSON object per line, appended as the run logs, truncated back on resume.

A run killed while appending can leave a torn last line; reading skips lines that are not JSON objects (with a
warning), so such a file never stops a resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fourm_core.data.atomic import write_text

log = logging.getLogger(__name__)


def append(path: Path, rec: dict[str, Any]) -> None:
    """Append ``rec`` as one JSON line."""
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def read(path: Path) -> list[dict[str, Any]]:
    """The records of ``path`` in order; lines that are not JSON objects (a torn write) are skipped."""
    out, bad = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
        else:
            bad.append(n)
    if bad:
        log.warning("%s: skipped %d line(s) that are not JSON objects (torn by an interrupted write): line(s) %s",
                    path, len(bad), bad[:5])
    return out


def truncate(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be logged again), and torn lines;
    the file is rewritten atomically."""
    if not path.exists():
        return
    keep = [rec for rec in read(path) if _step(rec) <= step]
    write_text(path, "".join(json.dumps(rec) + "\n" for rec in keep))


def _step(rec: dict[str, Any]) -> int:
    try:
        return int(rec.get("step", 0))
    except (TypeError, ValueError):
        return 0
