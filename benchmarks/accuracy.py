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
import hashlib
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
LEGACY_REEVAL_NAME = "results-eval.json"  # one re-evaluation a run, before they were keyed
#: The line of ``--doc`` below which the tables go; the text above it is kept.
MARKER = "<!-- the tables below are written by benchmarks/accuracy.py; text above is kept -->"


@dataclass(frozen=True)
class Job:
    """One training run of the comparison."""

    recipe: Path
    seed: int
    run_dir: Path

    @property
    def label(self) -> str:
        return self.recipe.stem


def plan(recipes: list[Path], seeds: list[int], out: Path,
         seed_major: bool = False) -> list[Job]:
    """The runs in order: every seed of a recipe before the next recipe, or with ``seed_major``
    every recipe's first seed before any second seed (a comparison cut short then still has
    every recipe)."""
    pairs = ([(r, s) for s in seeds for r in recipes] if seed_major
             else [(r, s) for r in recipes for s in seeds])
    return [Job(recipe, seed, out / recipe.stem / f"seed{seed}") for recipe, seed in pairs]


def progreid_command(args: list[str], overrides: list[str]) -> list[str]:
    """``python -m progreid.cli ARGS --set KEY=VALUE ...``."""
    return [sys.executable, "-m", "progreid.cli", *args,
            *(part for item in overrides for part in ("--set", item))]


def threads_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_job(job: Job, threads: int, overrides: list[str]) -> float:
    """Train ``job`` unless it has finished; return its wall time in seconds (all attempts)."""
    wall_file = job.run_dir / WALL_NAME
    previous = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else 0.0
    if (job.run_dir / "results.json").exists():
        return previous
    command = progreid_command(
        ["train", str(job.recipe)],
        [f"train.seed={job.seed}", f"train.output_dir={job.run_dir}", "train.progress=false",
         *overrides])
    if (job.run_dir / "checkpoints" / "last.pt").exists():
        command.append("--resume")
    env = threads_env(threads)
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


def reeval_name(overrides: list[str]) -> str:
    """The file of a run's re-evaluation with ``overrides``: one per set of overrides, so that
    several protocols (multi-query, re-ranking, 10-crop) can be tabulated from the same runs."""
    key = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:12]
    return f"results-eval-{key}.json"


def reevaluate(job: Job, threads: int, overrides: list[str]) -> None:
    """``progreid evaluate`` a finished run with ``overrides`` (e.g. another test-time
    augmentation) into :func:`reeval_name`, once: the trained weights do not depend on the
    ``eval`` section. A legacy ``results-eval.json`` made with the same overrides is renamed."""
    target = job.run_dir / reeval_name(overrides)
    legacy = job.run_dir / LEGACY_REEVAL_NAME
    if not target.exists() and legacy.exists() and \
            json.loads(legacy.read_text()).get("overrides") == overrides:
        legacy.rename(target)
    if target.exists() or not (job.run_dir / "results.json").exists():
        return
    start = time.perf_counter()
    result = subprocess.run(progreid_command(["evaluate", str(job.run_dir), "--json"], overrides),
                            env=threads_env(threads), capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"evaluating {job.run_dir} failed: {result.stderr.strip()[-500:]}")
    metrics = json.loads(result.stdout[result.stdout.index("{"):])
    atomic_write_json(target, {"overrides": overrides, "eval_seconds":
                               round(time.perf_counter() - start, 1), **metrics})


def results_of(jobs: list[Job], name: str = "results.json") -> dict[str, dict[int, dict]]:
    """``{recipe: {seed: metrics + wall seconds}}`` of the finished runs (metrics from the
    run's ``name`` file)."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for job in jobs:
        if not (job.run_dir / name).exists():
            continue
        metrics = json.loads((job.run_dir / name).read_text())
        wall = json.loads((job.run_dir / WALL_NAME).read_text())["seconds"]
        table.setdefault(job.label, {})[job.seed] = {**metrics, "wall": wall}
    return table


def machine() -> str:
    """Cores and load, to judge the wall times by."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPU cores, load average {load} (1, 5, 15 min) when the table was made"


def markdown(table: dict[str, dict[int, dict[str, float]]], baseline: str, threads: int,
             command: str) -> str:
    """Mean ± sample standard deviation per recipe over its finished seeds, then the paired
    differences from ``baseline`` over the seeds both finished."""
    lines = [f"`{command}`", "", f"Machine: {machine()}.", "",
             f"{threads} torch thread(s) per run; mean ± sample standard deviation over the "
             "seeds (percent).", "",
             "| recipe | seeds | rank-1 | rank-5 | mAP | mINP | wall time per run (min) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, runs in table.items():
        seeds = sorted(runs)
        cells = [mean_std([runs[s][m] for s in seeds]) for m in METRICS]
        wall = mean_std([runs[s]["wall"] / 60 for s in seeds])
        lines.append(f"| {label} | {', '.join(map(str, seeds))} | {' | '.join(cells)} | "
                     f"{wall} |")
    lines += ["", f"Paired difference from `{baseline}` (same seed, then mean ± standard "
              "deviation over the seeds; a difference within about one spread is noise):", "",
              "| recipe | seeds | rank-1 | mAP | per-seed rank-1 differences |",
              "| --- | --- | --- | --- | --- |"]
    for label, runs in table.items():
        seeds = sorted(set(runs) & set(table.get(baseline, {})))
        if label == baseline or not seeds:
            continue
        diffs = {m: [runs[s][m] - table[baseline][s][m] for s in seeds] for m in ("rank1", "mAP")}
        per_seed = ", ".join(f"{d:+.1f}" for d in diffs["rank1"])
        lines.append(f"| {label} | {', '.join(map(str, seeds))} | {mean_std(diffs['rank1'])} | "
                     f"{mean_std(diffs['mAP'])} | {per_seed} |")
    return "\n".join(lines) + "\n"


def section_markers(section: str) -> tuple[str, str]:
    """The comments around a named section of tables in a doc (see :func:`write_doc`)."""
    return (f"<!-- tables of benchmarks/accuracy.py --section {section} -->",
            f"<!-- end of --section {section} -->")


def write_doc(path: Path, tables: str, section: str | None = None) -> None:
    """Write ``tables`` to ``path`` below :data:`MARKER`, keeping the text written above it; or,
    with ``section``, between that section's markers (appended when absent), keeping the rest
    of the doc, so that several comparisons share one doc."""
    old = path.read_text() if path.exists() else ""
    if section is None:
        preamble = old[:old.index(MARKER)] if MARKER in old else ""
        atomic_write_text(path, f"{preamble}{MARKER}\n\n{tables}")
        return
    start, end = section_markers(section)
    block = f"{start}\n\n{tables}\n{end}"
    if start in old and end in old:
        text = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        text = f"{old.rstrip()}\n\n{block}\n" if old else f"{block}\n"
    atomic_write_text(path, text)


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
    parser.add_argument("--section", default=None,
                        help="write the tables into this named section of --doc (between its "
                        "markers), leaving the doc's other sections as they are")
    parser.add_argument("--baseline", default=None, help="recipe stem of the baseline")
    parser.add_argument("--eval-set", action="append", default=[], metavar="KEY=VALUE",
                        help="also evaluate every finished run with these eval overrides "
                        "(e.g. eval.ten_crop=true) and tabulate them")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the runs that have finished")
    parser.add_argument("--seed-major", action="store_true",
                        help="run every recipe's seed before the next seed")
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
    jobs = plan(args.recipes, args.seeds, args.out, args.seed_major)
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for job, seconds in zip(jobs, pool.map(
                    lambda j: run_job(j, args.threads, args.overrides), jobs), strict=True):
                print(f"{job.label} seed {job.seed}: done ({seconds / 60:.1f} min)", flush=True)
    command = "python benchmarks/accuracy.py " + " ".join(argv if argv is not None
                                                          else sys.argv[1:])
    text = markdown(results_of(jobs), baseline, args.threads, command)
    if args.eval_set:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda j: reevaluate(j, args.threads, args.eval_set), jobs))
        text += (f"\n## The same runs evaluated with `{' '.join(args.eval_set)}`\n\n"
                 + markdown(results_of(jobs, reeval_name(args.eval_set)), baseline,
                            args.threads, command))
    print(text)
    if args.doc is not None:
        write_doc(args.doc, text, args.section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
