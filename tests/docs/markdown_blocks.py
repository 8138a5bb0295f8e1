"""The fenced command blocks of a markdown file, with the ``docs-test`` markers that say how the documented-
commands test treats them.

A block is run unless the line before its fence (blank lines aside) is a marker comment::

    <!-- docs-test: skip REASON -->      never run here (a GPU, a hub download, the test suite itself)

A skip without a reason is an error, so a skip is always explained in the markdown itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
#: languages whose blocks are run: shell blocks with bash, python blocks with the interpreter
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}


@dataclass(frozen=True)
class Block:
    """One fenced block: its file, first line (1-based, of the fence), language, text and skip reason."""

    path: Path
    line: int
    lang: str
    text: str
    skip: str | None

    @property
    def label(self) -> str:
        first = next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")
        return f"{self.path.name}:{self.line}: {first[:60]}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a runnable language in ``path``, in order."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang, start = m.group(1).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{start + 1}: the ``` block is never closed")
        skip = None
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k].strip()) if k >= 0 else None
        if marker:
            action, reason = marker.groups()
            if action != "skip":
                raise ValueError(f"{path}:{k + 1}: unknown docs-test marker {action!r} (only 'skip REASON')")
            if not reason:
                raise ValueError(f"{path}:{k + 1}: a docs-test skip needs a reason: <!-- docs-test: skip WHY -->")
            skip = reason
        if lang in RUNNABLE:
            out.append(Block(path, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n", skip))
        i = j + 1
    return out
