"""``python -m fourm_trainers.train`` (and ``accelerate launch -m`` / ``torchrun -m``): the ``fourm train``
command, with the same one-line ``error:`` contract (exit status 2) as ``fourm``."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
