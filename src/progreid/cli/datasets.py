"""`progreid datasets ROOT [--name NAME]`: a table like PLA Table 1 for a dataset folder (without
``--name``: of the first known layout that reads it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from progreid.cli.common import parse_options
from progreid.data.registry import DATASET_NAMES, DETECTED


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("datasets", help="summarise a dataset folder (identities, images, "
                                             "cameras per split)")
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--name", choices=DATASET_NAMES, metavar="NAME",
                        help="reader: " + ", ".join(DATASET_NAMES) + " (default: the first of "
                             + ", ".join(DETECTED) + " whose layout reads the folder)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="reader option, e.g. variant=labeled")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.data import build_dataset, datasets_table, detect_dataset
    from progreid.errors import DatasetError

    options = parse_options(args.option)
    if args.name is not None:
        dataset = build_dataset(args.name, args.root, **options)
    else:
        try:
            name, dataset = detect_dataset(args.root, **options)
        except DatasetError as exc:
            if Path(args.root).is_dir():
                exc.add_note(f"name its dataset with --name (one of {', '.join(DATASET_NAMES)})")
            raise
        print(f"progreid datasets: read {args.root} as {name}, the first layout that fits "
              "(choose another with --name)", file=sys.stderr)
    print(datasets_table(dataset))
    return 0
