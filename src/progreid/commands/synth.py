"""`progreid synth OUT_DIR [--identities N ...]`: write a synthetic-pedestrian dataset."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="generate synthetic pedestrians (Market-1501 layout)")
    parser.add_argument("out_dir")
    parser.add_argument("--identities", type=int, help="total identities (train + test)")
    parser.add_argument("--train-identities", type=int, help="identities used for training")
    parser.add_argument("--cameras", type=int)
    parser.add_argument("--images-per-camera", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--seed", type=int)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.data.synthetic import generate_pedestrians

    options = {key: value for key, value in vars(args).items()
               if key in ("identities", "train_identities", "cameras", "images_per_camera",
                          "height", "width", "seed") and value is not None}
    out = generate_pedestrians(args.out_dir, **options)
    print(f"synthetic pedestrians written to {out}")
    return 0
