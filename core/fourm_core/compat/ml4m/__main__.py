"""``python -m fourm_core.compat.ml4m {verify,verify-release} DIR``: one summary line; exit 0 pass, 1 fail,
2 when the set cannot be read."""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    from fourm_registry.errors import FourmError

    from .release_check import verify_release
    from .verify import verify

    parser = argparse.ArgumentParser(prog="python -m fourm_core.compat.ml4m",
                                     description="Reference 4M (apple/ml-4m) checkpoint tools")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="compare fourm with reference outputs stored in a parity set DIR")
    v.add_argument("directory")
    r = sub.add_parser("verify-release", help="check a release-format set DIR: the model's forward, the text "
                                              "serialization, the generation schedules and the tokenizers")
    r.add_argument("directory")
    r.add_argument("--archs", metavar="FILE", help="JSON of extra encoder / decoder presets the set's tokenizers "
                                                   "name ({name: {kind, hyper-parameters}})")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    run = verify if args.command == "verify" else verify_release
    try:
        if getattr(args, "archs", None):
            from .release_check import register_archs

            register_archs(args.archs)
        passed, summary = run(args.directory)
    except (FourmError, OSError, ValueError) as exc:
        print(f"ml4m {args.command} {args.directory}: ERROR {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
