"""``python -m fourm_trainers.finetune`` (also under ``accelerate launch -m`` / ``torchrun -m``)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
