"""``metrics.jsonl``: one JSON object per line, appended as the run logs, truncated back on resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append(path: Path, rec: dict[str, Any]) -> None:
    """Append ``rec`` as one JSON line."""
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def truncate(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))
