"""The `progreid` command: a thin shell that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from progreid import __version__
from progreid.commands import COMMANDS
from progreid.errors import ProgreidError

#: Errors printed as one line with exit status 2 (no traceback).
USER_ERRORS = (ProgreidError, FileNotFoundError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="progreid", description=__doc__)
    parser.add_argument("--version", action="version", version=f"progreid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"progreid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"progreid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
