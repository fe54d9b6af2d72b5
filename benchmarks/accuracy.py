"""Rank training recipes by accuracy over several seeds: mean +- standard deviation of rank-1,
rank-5, mAP and mINP, and each recipe's paired difference from the baseline (same seeds).

Every (recipe, seed) is a `progreid train` run in its own folder under ``--out``, at a fixed
torch thread count; a finished run (its ``results.json`` exists) is not repeated and a run cut
short continues from its checkpoint, so the script resumes where it stopped. The table is
printed and written to ``--doc`` (Markdown).

    python benchmarks/accuracy.py configs/cuhk01/baseline.yaml configs/cuhk01/pla.yaml \
        --seeds 0 1 2 --threads 1 --jobs 2 --doc docs/accuracy.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from progreid.utils.io import atomic_write_json, atomic_write_text

METRICS = ("rank1", "rank5", "mAP", "mINP")
WALL_NAME = "wall_time.json"


@dataclass(frozen=True)
class Job:
    """One training run of the comparison."""

    recipe: Path
    seed: int
    run_dir: Path

    @property
    def label(self) -> str:
        return self.recipe.stem


def plan(recipes: list[Path], seeds: list[int], out: Path) -> list[Job]:
    return [Job(recipe, seed, out / recipe.stem / f"seed{seed}")
            for recipe in recipes for seed in seeds]


def run_job(job: Job, threads: int, overrides: list[str]) -> float:
    """Train ``job`` unless it has finished; return its wall time in seconds (all attempts)."""
    wall_file = job.run_dir / WALL_NAME
    previous = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else 0.0
    if (job.run_dir / "results.json").exists():
        return previous
    command = [sys.executable, "-m", "progreid.cli", "train", str(job.recipe),
               "--set", f"train.seed={job.seed}", "--set", f"train.output_dir={job.run_dir}",
               "--set", "train.progress=false"]
    for item in overrides:
        command += ["--set", item]
    if (job.run_dir / "checkpoints" / "last.pt").exists():
        command.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    job.run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(job.run_dir.parent / f"seed{job.seed}.log", "a") as log:
        result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                check=False)
    seconds = previous + time.perf_counter() - start
    atomic_write_json(wall_file, {"seconds": round(seconds, 1), "threads": threads})
    if result.returncode != 0:
        raise RuntimeError(f"{job.label} seed {job.seed} failed (exit {result.returncode}); "
                           f"see {job.run_dir.parent / f'seed{job.seed}.log'}")
    return seconds


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {spread:.1f}"


def results_of(jobs: list[Job]) -> dict[str, dict[int, dict[str, float]]]:
    """``{recipe: {seed: metrics + wall seconds}}`` of the finished runs."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for job in jobs:
        metrics = json.loads((job.run_dir / "results.json").read_text())
        wall = json.loads((job.run_dir / WALL_NAME).read_text())["seconds"]
        table.setdefault(job.label, {})[job.seed] = {**metrics, "wall": wall}
    return table


def markdown(table: dict[str, dict[int, dict[str, float]]], baseline: str,
             threads: int) -> str:
    """Mean ± sample standard deviation per recipe, then paired differences from ``baseline``."""
    seeds = sorted(next(iter(table.values())))
    lines = [f"Seeds {', '.join(map(str, seeds))}; {threads} torch thread(s) per run; "
             "mean ± sample standard deviation over the seeds (percent).", "",
             "| recipe | rank-1 | rank-5 | mAP | mINP | wall time per run (min) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for label, runs in table.items():
        cells = [mean_std([runs[s][m] for s in seeds]) for m in METRICS]
        wall = mean_std([runs[s]["wall"] / 60 for s in seeds])
        lines.append(f"| {label} | {' | '.join(cells)} | {wall} |")
    lines += ["", f"Paired difference from `{baseline}` (same seed, then mean ± standard "
              "deviation over the seeds; a difference within about one spread is noise):", "",
              "| recipe | rank-1 | mAP | per-seed rank-1 differences |",
              "| --- | --- | --- | --- |"]
    for label, runs in table.items():
        if label == baseline:
            continue
        diffs = {m: [runs[s][m] - table[baseline][s][m] for s in seeds] for m in ("rank1", "mAP")}
        per_seed = ", ".join(f"{d:+.1f}" for d in diffs["rank1"])
        lines.append(f"| {label} | {mean_std(diffs['rank1'])} | {mean_std(diffs['mAP'])} | "
                     f"{per_seed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", type=Path, help="YAML recipes; the first is the "
                        "baseline of the paired differences unless --baseline names another")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--doc", type=Path, default=None, help="also write the table here")
    parser.add_argument("--baseline", default=None, help="recipe stem of the baseline")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override applied to every recipe")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.recipes if not r.is_file()]
    if missing:
        print(f"accuracy.py: error: recipe not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    baseline = args.baseline or args.recipes[0].stem
    if baseline not in {r.stem for r in args.recipes}:
        print(f"accuracy.py: error: --baseline {baseline!r} is not one of the recipes",
              file=sys.stderr)
        return 2
    jobs = plan(args.recipes, args.seeds, args.out)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for job, seconds in zip(jobs, pool.map(
                lambda j: run_job(j, args.threads, args.overrides), jobs), strict=True):
            print(f"{job.label} seed {job.seed}: done ({seconds / 60:.1f} min)", flush=True)
    text = markdown(results_of(jobs), baseline, args.threads)
    print(text)
    if args.doc is not None:
        atomic_write_text(args.doc, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
