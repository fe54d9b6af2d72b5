"""Ranking evaluation: progreid's sort-free ``evaluate`` against a per-query argsort reference.

Clustered synthetic features with Market-1501 or MSMT17 test-set sizes (identities, cameras,
queries, gallery, distractors) are ranked three ways, each in its own process so that its peak
memory (VmHWM) is its own: the plain reference (numpy argsort of every row, stable and
default kind), ``progreid.evaluation.evaluate`` on the same distance matrix, and
``evaluate_features`` from the features (chunked, never holding the Q x G matrix). The script
checks that the results agree and prints time, peak memory and the speed-up.

    PYTHONPATH=src python benchmarks/ranking.py --scale market
    PYTHONPATH=src python benchmarks/ranking.py --scale msmt
    PYTHONPATH=src python benchmarks/ranking.py --gallery-size 1000000 --only features
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

from progreid.evaluation import evaluate, evaluate_features, pairwise_distance


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


def synthetic(scale: Scale, dim: int, seed: int, gallery_size: int | None = None,
              noise: float = 0.8, camera_shift: float = 0.7) -> dict[str, np.ndarray]:
    """Clustered features: identity centre + camera offset + per-image noise of varying
    hardness; distractors (identity 0) are people outside the test identities. A larger
    ``gallery_size`` adds distractors (as the Market-1501 + 500k distractor set does)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((scale.identities + 1, dim)).astype(np.float32)
    offsets = camera_shift * rng.standard_normal((scale.cameras, dim)).astype(np.float32)
    distractors = scale.distractors + max(0, (gallery_size or scale.gallery) - scale.gallery)
    g_pids = np.concatenate([rng.integers(1, scale.identities + 1, scale.gallery
                                          - scale.distractors), np.zeros(distractors, int)])
    q_pids = rng.integers(1, scale.identities + 1, scale.queries)

    def images(pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and cameras; each distractor is a person of its own (a random centre)."""
        cams = rng.integers(0, scale.cameras, len(pids))
        feats = np.empty((len(pids), dim), dtype=np.float32)
        for start in range(0, len(pids), 65536):  # bounded temporaries for huge galleries
            p, c = pids[start:start + 65536], cams[start:start + 65536]
            hardness = rng.uniform(0.8, 1.2, (len(p), 1)).astype(np.float32)
            base = np.where((p == 0)[:, None], rng.standard_normal((len(p), dim), np.float32),
                            centres[p])
            feats[start:start + 65536] = (base + offsets[c] + noise * hardness
                                          * rng.standard_normal((len(p), dim), np.float32))
        return feats, cams

    q_feats, q_cams = images(q_pids)
    g_feats, g_cams = images(g_pids)
    return {"q_feats": q_feats, "g_feats": g_feats, "q_pids": q_pids, "g_pids": g_pids,
            "q_cams": q_cams, "g_cams": g_cams}


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


def _child(job: Callable, data_dir: str, threads: int) -> Measured:
    torch.set_num_threads(threads)
    # copy-on-write maps: an input counts in the peak only once the job reads it
    data = {p.stem: np.load(p, mmap_mode="c") for p in Path(data_dir).glob("*.npy")}
    before = _status_gib("VmRSS")
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = job(data)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    return Measured(seconds, cpu, _status_gib("VmHWM"), before, value)


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


def job_reference_stable(d):
    return reference_evaluate(d["distmat"], *_labels(d), kind="stable")


def job_reference_quicksort(d):
    return reference_evaluate(d["distmat"], *_labels(d), kind="quicksort")


def job_evaluate(d):
    r = evaluate(d["distmat"], *_labels(d))
    return r.cmc, r.mAP, r.mINP, r.num_valid, r.num_skipped


def job_features(d):
    r = evaluate_features(d["q_feats"], d["g_feats"], *_labels(d))
    return r.cmc, r.mAP, r.mINP, r.num_valid, r.num_skipped


JOBS = {"reference-stable": job_reference_stable, "reference-quicksort": job_reference_quicksort,
        "evaluate": job_evaluate, "features": job_features}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="market")
    parser.add_argument("--gallery-size", type=int, help="pad the gallery with distractors")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", nargs="+", choices=sorted(JOBS), default=sorted(JOBS))
    args = parser.parse_args(argv)
    data = synthetic(SCALES[args.scale], args.dim, args.seed, args.gallery_size)
    num_q, num_g = len(data["q_pids"]), len(data["g_pids"])
    print(f"scale {args.scale}: {num_q} queries x {num_g} gallery, dim {args.dim}, "
          f"{args.threads} torch threads")
    with tempfile.TemporaryDirectory() as data_dir:
        if any(name != "features" for name in args.only):
            data["distmat"] = pairwise_distance(data["q_feats"], data["g_feats"]).numpy()
        save_arrays(data, data_dir)
        del data
        results = {}
        for name in sorted(args.only, key=list(JOBS).index):
            results[name] = m = measure(JOBS[name], data_dir, args.threads)
            cmc, mean_ap, mean_inp, valid, _ = m.value
            print(f"{name:20s} {m.describe()}  rank-1 {cmc[0]:.4f}  mAP {mean_ap:.4f}  "
                  f"mINP {mean_inp:.4f}  valid {valid}", flush=True)
    exact = [name for name in results if name != "reference-quicksort"]
    results = {exact[0]: results[exact[0]], **results}
    base = results[exact[0]].value
    for name, m in list(results.items())[1:]:
        cmc, mean_ap, mean_inp, valid, _ = m.value
        diff = max(np.abs(cmc - base[0]).max(), abs(mean_ap - base[1]), abs(mean_inp - base[2]))
        print(f"max difference {name} - {exact[0]}: {diff:.1e}")
        # ``features`` computes its own float32 distances: BLAS may round the products
        # differently from the full matrix's (even between two calls), moving near-ties.
        tolerance = 1e-3 if name == "features" else 1e-9
        if name in exact and (diff > tolerance or valid != base[3]):
            raise SystemExit(f"{name} disagrees with {exact[0]}: max diff {diff}")
    # the default argsort is not stable: exact ties in distance may be ordered differently
    print(f"results agree ({', '.join(exact)}; features within the rounding of its distances)")
    for ref in ("reference-quicksort", "reference-stable"):
        for name in ("evaluate", "features"):
            if ref in results and name in results:
                print(f"speed-up {name} vs {ref}: "
                      f"{results[ref].seconds / results[name].seconds:.1f}x wall, "
                      f"{results[ref].cpu_seconds / results[name].cpu_seconds:.1f}x cpu")


if __name__ == "__main__":
    main()
