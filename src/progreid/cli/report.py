"""`progreid report RUN_DIR [--out FILE] [--queries N]`: a self-contained HTML page."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write a self-contained HTML report of a run")
    parser.add_argument("run", help="run folder")
    parser.add_argument("--out", help="HTML file (default: RUN_DIR/report.html)")
    parser.add_argument("--queries", type=int, default=6, help="sample queries shown ranked")
    parser.add_argument("--top", type=int, default=10, help="matches shown per query")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.config import ConfigError
    from progreid.report.html import write_report
    from progreid.utils.device import resolve_device

    if args.queries < 1 or args.top < 1:
        raise ConfigError(f"--queries {args.queries} / --top {args.top}: both must be >= 1")
    print(write_report(args.run, args.out, args.queries, args.top, resolve_device(args.device)))
    return 0
