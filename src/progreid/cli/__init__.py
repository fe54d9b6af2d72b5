"""The `progreid` command: a thin shell that parses arguments and calls the library.

One module per sub-command, each with ``register(subparsers)``; they import the library they
run inside their ``run`` function, so ``progreid evaluate`` loads no training code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

# Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs spinning
# threads steal the cores that the working ones need (a demo epoch beside a second demo on 2
# cores: 78 s spinning, 3-4 s passive). Set before torch is first imported; a user's own
# OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from progreid import __version__  # noqa: E402
from progreid.cli import (  # noqa: E402
    datasets,
    demo,
    evaluate,
    export,
    index,
    plot,
    prepare,
    profile,
    report,
    search,
    synth,
    train,
)
from progreid.errors import OutputError, ProgreidError  # noqa: E402

COMMANDS = [train, evaluate, datasets, prepare, synth, demo, plot, profile, export, index, search,
            report]

#: Errors printed as one line with exit status 2 (no traceback unless --debug); so is a failed
#: write (:meth:`OutputError.of`).
USER_ERRORS = (ProgreidError, FileNotFoundError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="progreid", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"progreid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set PROGREID_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def user_error(exc: Exception) -> Exception | None:
    """``exc`` as the error to report in one line, or None for a genuine bug."""
    return exc if isinstance(exc, USER_ERRORS) else OutputError.of(exc)


def error_line(exc: Exception, error: Exception) -> str:
    """The message of ``error`` (the user error of ``exc``) with the notes of both
    (:meth:`BaseException.add_note`), on one line."""
    line = str(error)
    for note in dict.fromkeys([*getattr(error, "__notes__", []), *getattr(exc, "__notes__", [])]):
        line = f"{line.rstrip('.')}; {note}"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"progreid {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        if args.debug or os.environ.get("PROGREID_DEBUG", "0") not in ("", "0"):
            traceback.print_exc()
        print(f"progreid {args.command}: error: {error_line(exc, error)}", file=sys.stderr)
        return 2
