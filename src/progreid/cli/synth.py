"""`progreid synth OUT_DIR [--identities N ...]`: write a synthetic-pedestrian dataset."""

from __future__ import annotations

import argparse
import dataclasses


def _spec_fields() -> list[dataclasses.Field]:
    from progreid.data.synthetic import SyntheticSpec

    return list(dataclasses.fields(SyntheticSpec))


def flag(name: str) -> str:
    """The option of a spec field: ``train_identities`` -> ``--train-identities``."""
    return f"--{name.replace('_', '-')}"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="generate synthetic pedestrians (Market-1501 layout)")
    parser.add_argument("out_dir")
    for spec_field in _spec_fields():  # one option per SyntheticSpec field
        parser.add_argument(flag(spec_field.name), type=int,
                            metavar="N", help=f"default {spec_field.default}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.config import ConfigError
    from progreid.data.synthetic import SyntheticSpecError, generate_pedestrians

    options = {f.name: getattr(args, f.name) for f in _spec_fields()
               if getattr(args, f.name) is not None}
    try:
        out = generate_pedestrians(args.out_dir, **options)
    except SyntheticSpecError as exc:
        raise ConfigError(exc.spelled(flag)) from exc
    print(f"synthetic pedestrians written to {out}")
    return 0
