"""`progreid prepare cuhk03 RAW_MAT SPLIT_DIR OUT_DIR`: extract CUHK03 images once."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prepare", help="one-off dataset preparation")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="DATASET")
    cuhk03 = kinds.add_parser("cuhk03", help="extract images from the official cuhk-03.mat")
    cuhk03.add_argument("raw_mat", help="path to cuhk-03.mat (HDF5)")
    cuhk03.add_argument("split_dir", help="folder with cuhk03_new_protocol_config_*.mat")
    cuhk03.add_argument("out_dir", help="dataset folder to create")
    cuhk03.set_defaults(func=run_cuhk03)


def run_cuhk03(args: argparse.Namespace) -> int:
    from progreid.data.cuhk03 import prepare_cuhk03

    out = prepare_cuhk03(args.raw_mat, args.split_dir, args.out_dir)
    print(f"CUHK03 images written to {out}")
    return 0
