"""`progreid train CONFIG.yaml [--set key=value ...] [--resume]`."""

from __future__ import annotations

import argparse
import json

from progreid.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model from a YAML recipe")
    parser.add_argument("config", help="YAML recipe (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. optim.lr=1e-4")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.output_dir from its last checkpoint")
    parser.add_argument("--json", action="store_true",
                        help="print the final metrics as JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from progreid.cli.report_table import metrics_table
    from progreid.training.run import train
    from progreid.utils.distributed import distributed_context

    cfg = load_config(args.config, args.overrides)
    with distributed_context(cfg.train.device, cfg.train.sync_bn) as (rank, world_size):
        metrics = train(cfg, resume=args.resume, rank=rank, world_size=world_size)
        if rank == 0 and args.json:
            print(json.dumps({"run": cfg.train.output_dir, **metrics}, indent=2))
        elif rank == 0:
            print(metrics_table({"final": metrics}))
            print(f"run folder: {cfg.train.output_dir}  (all metrics: results.json)")
    return 0
