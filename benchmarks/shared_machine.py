"""Training epoch time on a shared machine: OpenMP threads that spin against ones that sleep.

Runs ``--pairs`` trainings side by side (as two users' demos would) for each OpenMP wait policy:
the OpenMP default (idle threads spin) and ``PASSIVE`` (idle threads sleep, what the
``progreid`` command sets). Each training is the demo model on a small synthetic dataset for
``--epochs`` epochs of ``--batches`` batches; the median epoch time of each policy and their
ratio are printed. Example: ``python benchmarks/shared_machine.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> None:
    """One training: print its epoch times, one per line."""
    import torch

    from progreid.cli.demo import demo_config_path
    from progreid.config import load_config
    from progreid.training.objective import Objective
    from progreid.training.run import load_dataset
    from progreid.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    cfg = load_config(demo_config_path(), [
        f"data.root={args.data}", "data.workers=1", f"data.batches_per_epoch={args.batches}",
        "train.progress=false", f"train.output_dir={args.data}/run"])
    trainer = Trainer(cfg, load_dataset(cfg), cfg.train.output_dir)
    objective = Objective.from_config(cfg.loss)
    for _ in range(args.epochs):
        start = time.perf_counter()
        trainer.train_epoch(objective)
        print(time.perf_counter() - start, flush=True)


def side_by_side(args: argparse.Namespace, policy: str | None) -> list[float]:
    """Epoch times of ``args.pairs`` trainings run at once under one wait policy."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--child", "--data", str(args.data),
               "--threads", str(args.threads), "--epochs", str(args.epochs),
               "--batches", str(args.batches)]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(args.pairs)]
    return [float(line) for run in runs for line in run.communicate()[0].split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="trainings run side by side")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from progreid.data.synthetic import generate_pedestrians

    with tempfile.TemporaryDirectory() as tmp:
        args.data = args.data or Path(tmp) / "data"
        generate_pedestrians(args.data, identities=80, train_identities=60, distractors=10,
                             height=128, width=64)
        print(f"{args.pairs} trainings side by side, {args.threads} threads each, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        medians = {}
        for name, policy in (("spinning (OpenMP default)", None), ("passive", "PASSIVE")):
            times = side_by_side(args, policy)
            medians[name] = statistics.median(times)
            print(f"{name:>26}: median epoch {medians[name]:6.2f} s  "
                  f"(all: {' '.join(f'{t:.1f}' for t in times)})")
        spin, passive = medians.values()
        print(f"passive is {spin / passive:.1f}x faster per epoch")


if __name__ == "__main__":
    main()
