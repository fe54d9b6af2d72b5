"""`progreid train CONFIG.yaml [--set key=value ...] [--resume]`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from progreid.config import load_config
from progreid.utils.io import missing_folders, remove_empty


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
    run_dir = Path(cfg.train.output_dir)
    new_folders = missing_folders(run_dir)
    with distributed_context(cfg.train.device, cfg.train.sync_bn) as (rank, world_size):
        try:
            metrics = train(cfg, resume=args.resume, rank=rank, world_size=world_size)
        except Exception as exc:
            if new_folders and rank == 0:
                leave_nothing_partial(exc, new_folders)
            raise
        if rank == 0 and args.json:
            print(json.dumps({"run": cfg.train.output_dir, **metrics}, indent=2))
        elif rank == 0:
            print(metrics_table({"final": metrics}))
            print(f"run folder: {cfg.train.output_dir}  (all metrics: results.json)")
    return 0


def leave_nothing_partial(exc: Exception, new_folders: list[Path]) -> None:
    """After a user error ``exc``, remove the run folder (and the parents) this command created
    unless it holds a checkpoint to ``--resume`` from; say which on ``exc`` (a note)."""
    from progreid.cli import user_error

    run_dir = new_folders[0]
    if user_error(exc) is None or not run_dir.exists():
        return
    if (run_dir / "checkpoints" / "last.pt").exists():
        exc.add_note(f"{run_dir} keeps its last checkpoint: fix the cause, then continue with "
                     "--resume")
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    remove_empty(new_folders[1:])
    if not run_dir.exists():
        exc.add_note(f"{run_dir} held no checkpoint yet and was removed")
