"""`progreid plot RUN_DIR [--out DIR] [--histogram-epochs N]`: training plots as PNG files."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plot", help="draw a run's loss and accuracy curves, TRC's S-value histograms "
                     "and PLA's optimisation trace (needs the 'plot' extra: matplotlib)")
    parser.add_argument("run_dir", help="run folder (holds metrics.jsonl)")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/plots)")
    parser.add_argument("--histogram-epochs", type=int, default=4, metavar="N",
                        help="epochs drawn per TRC phase in the S histograms (TRC Fig. 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.report.plots import write_plots

    if args.histogram_epochs < 1:
        print(f"progreid plot: error: --histogram-epochs must be >= 1, got "
              f"{args.histogram_epochs}", file=sys.stderr)
        return 2
    written = write_plots(args.run_dir, args.out, args.histogram_epochs)
    if not written:
        print(f"progreid plot: nothing to plot: {args.run_dir}/metrics.jsonl has no epoch, "
              "eval, trc_histogram or pla_round records", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
