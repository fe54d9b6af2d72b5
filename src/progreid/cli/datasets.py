"""`progreid datasets ROOT [--name NAME]`: a table like PLA Table 1 for a dataset folder."""

from __future__ import annotations

import argparse

from progreid.cli.common import parse_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("datasets", help="summarise a dataset folder (identities, images, "
                                             "cameras per split)")
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--name", default="market1501",
                        help="reader: market1501, dukemtmc, cuhk03, cuhk01, msmt17, folder, "
                             "synthetic")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="reader option, e.g. variant=labeled")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.data import build_dataset, datasets_table

    dataset = build_dataset(args.name, args.root, **parse_options(args.option))
    print(datasets_table(dataset))
    return 0
