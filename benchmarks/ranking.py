"""Ranking evaluation over a sweep of model quality: ``evaluate`` against a bare argsort.

For each point of the sweep, a Q x G distance matrix is built as the issue describes,
``rand + shift * (query identity != gallery identity)``, with the identities, cameras and
distractors of the benchmark's test split; ``shift`` sets the model's quality (mAP about 0.1,
0.3, 0.6 and 1.0). On that matrix, in the same process, the script times a bare
``np.argsort(d, axis=1)`` of every row (in blocks of rows, to bound the int64 result) and
``progreid.evaluation.evaluate`` back to back, ``--repeats`` times, and prints the achieved mAP,
the best times (wall clock and CPU, the least of the repeats, as timeit reports) and their
ratio, the median ratio and each repeat's ratio. On one point
it checks that ``evaluate`` equals the plain stable-sort reference (``reference_evaluate``,
which the tests use too), on all queries or on the first few hundred.
Last, ``evaluate_features`` ranks clustered synthetic features in a fresh process (time and
peak memory; it never holds the Q x G matrix).

    .venv/bin/python benchmarks/ranking.py                    # quick: 300 x 2,000
    .venv/bin/python benchmarks/ranking.py --scale market     # 3,368 x 19,732
    .venv/bin/python benchmarks/ranking.py --scale msmt17     # 11,659 x 82,161
    .venv/bin/python benchmarks/ranking.py --scale million    # 500 x 1,000,000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from progreid.evaluation import evaluate, evaluate_features


@dataclass(frozen=True)
class Scale:
    """Test-split sizes of a benchmark: identities, cameras, queries, gallery, distractors."""

    identities: int
    cameras: int
    queries: int
    gallery: int
    distractors: int


SCALES = {
    "small": Scale(100, 3, 300, 2_000, 200),
    "market": Scale(751, 6, 3_368, 19_732, 2_793),
    "msmt": Scale(3_060, 15, 11_659, 82_161, 0),
}
# the sweep's sizes: the million-image gallery is Market-1501 padded with distractors (as the
# Market-1501 + 500k set is), ranked for 500 of its queries
SWEEP_SCALES = {
    "quick": SCALES["small"],
    "market": SCALES["market"],
    "msmt17": SCALES["msmt"],
    "million": Scale(751, 6, 500, 1_000_000, 1_000_000 - 19_732 + 2_793),
}
SHIFTS = (0.1, 0.3, 0.6, 1.0)  # mAP about 0.1, 0.3, 0.6 and 1.0 with uniform noise


def labels(scale: Scale, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Query and gallery identities and cameras; the distractors (identity 0) close the
    gallery."""
    g_pids = np.concatenate([rng.integers(1, scale.identities + 1,
                                          scale.gallery - scale.distractors),
                             np.zeros(scale.distractors, dtype=np.int64)])
    q_pids = rng.integers(1, scale.identities + 1, scale.queries)
    return {"q_pids": q_pids, "g_pids": g_pids,
            "q_cams": rng.integers(0, scale.cameras, scale.queries),
            "g_cams": rng.integers(0, scale.cameras, scale.gallery)}


def synthetic(scale: Scale, dim: int, seed: int, gallery_size: int | None = None,
              noise: float = 0.8, camera_shift: float = 0.7) -> dict[str, np.ndarray]:
    """:func:`labels` and clustered features: identity centre + camera offset + per-image
    noise of varying hardness; each distractor is a person of its own (a random centre). A
    larger ``gallery_size`` adds distractors."""
    if gallery_size is not None and gallery_size > scale.gallery:
        scale = Scale(scale.identities, scale.cameras, scale.queries, gallery_size,
                      scale.distractors + gallery_size - scale.gallery)
    rng = np.random.default_rng(seed)
    data = labels(scale, rng)
    centres = rng.standard_normal((scale.identities + 1, dim)).astype(np.float32)
    offsets = camera_shift * rng.standard_normal((scale.cameras, dim)).astype(np.float32)

    def features(pids: np.ndarray, cams: np.ndarray) -> np.ndarray:
        feats = np.empty((len(pids), dim), dtype=np.float32)
        for start in range(0, len(pids), 65536):  # bounded temporaries for huge galleries
            p, c = pids[start:start + 65536], cams[start:start + 65536]
            hardness = rng.uniform(0.8, 1.2, (len(p), 1)).astype(np.float32)
            base = np.where((p == 0)[:, None], rng.standard_normal((len(p), dim), np.float32),
                            centres[p])
            feats[start:start + 65536] = (base + offsets[c] + noise * hardness
                                          * rng.standard_normal((len(p), dim), np.float32))
        return feats

    data["q_feats"] = features(data["q_pids"], data["q_cams"])
    data["g_feats"] = features(data["g_pids"], data["g_cams"])
    return data


def reference_evaluate(distmat: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank=50,
                       kind: str = "stable") -> tuple[np.ndarray, float, float, int, int] | None:
    """The plain reference: argsort each row, drop junk, read CMC, AP and INP off the matches.

    Returns (CMC, mAP, mINP, valid queries, skipped queries), or None when no query has a
    match. The tests check ``evaluate`` against it too."""
    cmc, aps, inps = np.zeros(max_rank), [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind=kind)
        junk = (g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q])
        hits = (g_pids[order] == q_pids[q])[~junk]
        if not hits.any():
            continue
        positions = np.flatnonzero(hits) + 1
        cmc[positions[0] - 1:] += 1
        aps.append(np.mean(np.arange(1, len(positions) + 1) / positions))
        inps.append(len(positions) / positions[-1])
    if not aps:
        return None
    return (cmc / len(aps), float(np.mean(aps)), float(np.mean(inps)), len(aps),
            distmat.shape[0] - len(aps))


@dataclass
class Measured:
    seconds: float  # wall clock
    cpu_seconds: float  # user + system time of the process (all threads)
    peak_gib: float  # peak resident memory (VmHWM) of the process that ran the job
    inputs_gib: float  # resident memory before the job (interpreter, libraries)
    value: object

    def describe(self) -> str:
        return (f"{self.seconds:8.2f} s (cpu {self.cpu_seconds:8.2f} s)  peak "
                f"{self.peak_gib:6.2f} GiB (at start {self.inputs_gib:5.2f})")


def _status_gib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak of this process image;
    unlike ru_maxrss, VmHWM does not inherit the parent's peak through fork + exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(job: Callable, data_dir: str, threads: int) -> Measured:
    torch.set_num_threads(threads)
    # copy-on-write maps: an input counts in the peak only once the job reads it
    data = {p.stem: np.load(p, mmap_mode="c") for p in Path(data_dir).glob("*.npy")}
    before = _status_gib("VmRSS")
    cpu, start = _cpu_seconds(), time.perf_counter()
    value = job(data)
    seconds = time.perf_counter() - start
    return Measured(seconds, _cpu_seconds() - cpu, _status_gib("VmHWM"), before, value)


def measure(job: Callable, data_dir: str, threads: int) -> Measured:
    """Run ``job(arrays)`` in a fresh process on the arrays saved in ``data_dir``."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_child, (job, data_dir, threads))


def save_arrays(data: dict[str, np.ndarray], data_dir: str) -> None:
    for name, array in data.items():
        np.save(os.path.join(data_dir, f"{name}.npy"), array)


def _labels(d):
    return d["q_pids"], d["g_pids"], d["q_cams"], d["g_cams"]


def job_features(d):
    r = evaluate_features(d["q_feats"], d["g_feats"], *_labels(d))
    return r.mAP, r.num_valid


def timed(fn: Callable, *args) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds of ``fn(*args)``, and its value."""
    cpu, start = _cpu_seconds(), time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, _cpu_seconds() - cpu, value


def argsort_rows(distmat: np.ndarray, block_elements: int = 1 << 26) -> None:
    """``np.argsort(distmat, axis=1)``, a block of rows at a time (each block's int64 result
    is dropped: the full one would be twice the matrix)."""
    rows = max(1, block_elements // distmat.shape[1])
    for start in range(0, distmat.shape[0], rows):
        np.argsort(distmat[start:start + rows], axis=1)


def check_point(distmat: np.ndarray, data: dict[str, np.ndarray], rows: int) -> str:
    """``evaluate`` of the first ``rows`` queries against the stable-sort reference."""
    part = distmat[:rows]
    q = {"q_pids": data["q_pids"][:rows], "q_cams": data["q_cams"][:rows]}
    args = (q["q_pids"], data["g_pids"], q["q_cams"], data["g_cams"])
    expected = reference_evaluate(part, *args)
    got = evaluate(part, *args)
    diff = max(np.abs(got.cmc - expected[0]).max(), abs(got.mAP - expected[1]),
               abs(got.mINP - expected[2]))
    if diff > 1e-9 or (got.num_valid, got.num_skipped) != expected[3:]:
        raise SystemExit(f"evaluate disagrees with the stable-sort reference: {diff}")
    return f"equal to the stable-sort reference on {rows} queries (max difference {diff:.1e})"


def sweep(data: dict[str, np.ndarray], dtype: np.dtype, repeats: int, check_rows: int,
          seed: int) -> None:
    """The table of the module docstring, one line per point of the sweep: each repeat times
    the argsort and then ``evaluate`` back to back; the line gives the best of each (wall
    clock and CPU), the ratio of the bests, the median of the repeats' ratios and each one."""
    shape = (len(data["q_pids"]), len(data["g_pids"]))
    other = data["q_pids"][:, None] != data["g_pids"][None, :]
    noise = np.random.default_rng(seed + 1).random(shape, dtype=np.float32)
    distmat = np.empty(shape, dtype=dtype)
    print(f"{'shift':>5} {'mAP':>6} {'argsort s':>9} {'(cpu)':>7} {'evaluate s':>10} "
          f"{'(cpu)':>7} {'best':>6} {'(cpu)':>6} {'median':>6} {'(cpu)':>6}  "
          "ratio of each repeat (best: of the best times)")
    for shift in SHIFTS:
        np.add(np.multiply(other, np.float32(shift), out=distmat), noise, out=distmat)
        runs = np.array([timed(argsort_rows, distmat)[:2] + timed(evaluate, distmat,
                                                                  *_labels(data))[:2]
                         for _ in range(repeats)])  # argsort wall, cpu, evaluate wall, cpu
        sort_wall, sort_cpu, wall, cpu = runs.min(0)
        ratio, ratio_cpu = np.median(runs[:, :2] / runs[:, 2:], 0)
        mean_ap = evaluate(distmat, *_labels(data)).mAP
        print(f"{shift:5.2f} {mean_ap:6.3f} {sort_wall:9.2f} {sort_cpu:7.2f} {wall:10.3f} "
              f"{cpu:7.3f} {sort_wall / wall:5.1f}x {sort_cpu / cpu:5.1f}x {ratio:5.1f}x "
              f"{ratio_cpu:5.1f}x  {' '.join(f'{r:.1f}' for r in runs[:, 0] / runs[:, 2])}",
              flush=True)
        if shift == SHIFTS[1] and check_rows:
            print(check_point(distmat, data, min(check_rows, shape[0])), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=list(SWEEP_SCALES), default="quick")
    parser.add_argument("--dtype", choices=["float32", "float64", "float16"], default="float32")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each point (best and median reported)")
    parser.add_argument("--check-rows", type=int, default=None,
                        help="queries checked against the reference (default: all, at most 500)")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-features", action="store_true", help="skip evaluate_features")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scale = SWEEP_SCALES[args.scale]
    data = labels(scale, np.random.default_rng(args.seed))
    print(f"scale {args.scale}: {scale.queries} queries x {scale.gallery} gallery, "
          f"{args.dtype}, {args.threads} torch threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    check_rows = args.check_rows if args.check_rows is not None else min(scale.queries, 500)
    sweep(data, np.dtype(args.dtype), args.repeats, check_rows, args.seed)
    if not args.no_features:
        data = synthetic(scale, args.dim, args.seed)
        with tempfile.TemporaryDirectory() as data_dir:
            save_arrays(data, data_dir)
            m = measure(job_features, data_dir, args.threads)
        print(f"evaluate_features (dim {args.dim}, clustered features, distances included): "
              f"{m.describe()}  mAP {m.value[0]:.4f}")


if __name__ == "__main__":
    main()
