"""``python -m fourm_demo --model DIR``: the ``fourm demo`` command without the ``fourm`` launcher."""

from __future__ import annotations

import sys

from fourm_registry.cli import run_command

from .cli import make_command

if __name__ == "__main__":
    sys.exit(run_command(make_command(), prog_name="fourm demo"))
