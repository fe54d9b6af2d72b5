"""`progreid synth OUT_DIR [--identities N ...]`: write a synthetic-pedestrian dataset."""

from __future__ import annotations

import argparse
import dataclasses


def _spec_fields() -> list[dataclasses.Field]:
    from progreid.data.synthetic import SyntheticSpec

    return list(dataclasses.fields(SyntheticSpec))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="generate synthetic pedestrians (Market-1501 layout)")
    parser.add_argument("out_dir")
    for spec_field in _spec_fields():  # one option per SyntheticSpec field
        parser.add_argument(f"--{spec_field.name.replace('_', '-')}", type=int,
                            metavar="N", help=f"default {spec_field.default}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.config import ConfigError
    from progreid.data.synthetic import generate_pedestrians

    options = {f.name: getattr(args, f.name) for f in _spec_fields()
               if getattr(args, f.name) is not None}
    try:
        out = generate_pedestrians(args.out_dir, **options)
    except ValueError as exc:  # the spec's own range checks name the option and its bounds
        raise ConfigError(str(exc)) from exc
    print(f"synthetic pedestrians written to {out}")
    return 0
