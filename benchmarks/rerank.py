"""k-reciprocal re-ranking: progreid's sparse ``re_rank_features`` against a dense transcription.

The reference is a direct dense transcription of the published algorithm (Zhong et al., CVPR
2017, as in the authors' code): N x N original distance, full argsort of every row, dense V,
dense query expansion. It is fed the distance blocks (their computation is not timed); progreid
starts from the features and computes its distances itself, so its time includes them. Each
method runs in its own process (peak memory = its VmHWM) on the clustered synthetic data
of ``benchmarks/ranking.py``; the script checks that the Q x G results agree within 1e-5 and
prints time (wall clock and CPU), peak memory, the machine's load average when each run
started, and the speed-up. ``--repeats`` runs each progreid method that many times (fresh
processes) and reports its fastest run, the peak memory of its largest; the reference runs
once. The reference needs ~13 GB at Market scale and is infeasible at MSMT17 scale (~35 GB per
N x N matrix): there only progreid runs.

    PYTHONPATH=src python benchmarks/rerank.py --scale market --repeats 3
    PYTHONPATH=src python benchmarks/rerank.py --scale msmt
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable

import numpy as np
import torch
from ranking import SCALES, Measured, measure, save_arrays, synthetic  # benchmarks/ on sys.path

from progreid.evaluation import pairwise_distance, re_rank, re_rank_features

K1, K2, LAMBDA = 20, 6, 0.3


def dense_re_ranking(q_g, q_q, g_g, k1=K1, k2=K2, lambda_value=LAMBDA) -> np.ndarray:
    """The published algorithm step by step on dense N x N arrays (stable neighbour sort)."""
    original = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)])
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(1.0 * original / np.max(original, axis=0))
    v = np.zeros_like(original)
    rank = np.argsort(original, kind="stable").astype(np.int32)
    num_query, num_all = q_g.shape[0], original.shape[0]
    half = int(np.around(k1 / 2.0))
    for i in range(num_all):
        forward = rank[i, :k1 + 1]
        recip = forward[np.where(rank[forward, :k1 + 1] == i)[0]]
        expansion = recip
        for cand in recip:
            cand_forward = rank[cand, :half + 1]
            cand_recip = cand_forward[np.where(rank[cand_forward, :half + 1] == cand)[0]]
            if len(np.intersect1d(cand_recip, recip)) > 2.0 / 3 * len(cand_recip):
                expansion = np.append(expansion, cand_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = weight / np.sum(weight)
    original = original[:num_query]
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(num_all):
            v_qe[i] = np.mean(v[rank[i, :k2], :], axis=0)
        v = v_qe
        del v_qe
    del rank
    inverted = [np.where(v[:, j] != 0)[0] for j in range(num_all)]
    jaccard = np.zeros_like(original)
    for i in range(num_query):
        shared = np.zeros(num_all, dtype=np.float32)
        for col in np.where(v[i] != 0)[0]:
            shared[inverted[col]] += np.minimum(v[i, col], v[inverted[col], col])
        jaccard[i] = 1 - shared / (2.0 - shared)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:, num_query:]


def job_reference(d):
    return dense_re_ranking(d["q_g"], d["q_q"], d["g_g"])


def job_dense(d):
    return re_rank(d["q_g"], d["q_q"], d["g_g"], K1, K2, LAMBDA)


def job_features(d):
    return re_rank_features(d["q_feats"], d["g_feats"], K1, K2, LAMBDA)


JOBS = {"reference": job_reference, "re_rank": job_dense, "re_rank_features": job_features}


class SavedJob:
    """A job whose Q x G result is saved to ``path`` (not sent back through a pipe)."""

    def __init__(self, job: Callable, path: str) -> None:
        self.job, self.path = job, path

    def __call__(self, data):
        np.save(self.path, self.job(data))
        return self.path


def best_of(job: SavedJob, data_dir: str, threads: int, repeats: int) -> Measured:
    """The fastest of ``repeats`` fresh-process runs of ``job`` (each printed with the 1-minute
    load average when it started), with the largest peak memory of them."""
    runs = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        runs.append(measure(job, data_dir, threads))
        print(f"{job.path.rsplit(os.sep, 1)[-1][:-4]:18s} {runs[-1].describe()}  load {load:.2f}",
              flush=True)
    best = min(runs, key=lambda run: run.seconds)
    best.peak_gib = max(run.peak_gib for run in runs)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="market")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", nargs="+", choices=sorted(JOBS),
                        help="default: all, but only re_rank_features at MSMT17 scale")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each progreid method (the fastest is reported)")
    args = parser.parse_args(argv)
    only = args.only or (["re_rank_features"] if args.scale == "msmt" else list(JOBS))
    data = synthetic(SCALES[args.scale], args.dim, args.seed)
    num_q, num_g = len(data["q_pids"]), len(data["g_pids"])
    print(f"scale {args.scale}: {num_q} queries + {num_g} gallery (N = {num_q + num_g}), "
          f"dim {args.dim}, k1 {K1}, k2 {K2}, lambda {LAMBDA}, {args.threads} torch threads")
    with tempfile.TemporaryDirectory() as data_dir:
        if any(name != "re_rank_features" for name in only):
            q, g = data["q_feats"], data["g_feats"]
            data.update(q_g=pairwise_distance(q, g).numpy(), q_q=pairwise_distance(q, q).numpy(),
                        g_g=pairwise_distance(g, g).numpy())
        save_arrays({k: data[k] for k in data if not k.endswith(("pids", "cams"))}, data_dir)
        os.mkdir(os.path.join(data_dir, "results"))
        del data
        results = {}
        for name in sorted(only, key=list(JOBS).index):
            job = SavedJob(JOBS[name], os.path.join(data_dir, "results", f"{name}.npy"))
            results[name] = m = best_of(job, data_dir, args.threads,
                                        1 if name == "reference" else args.repeats)
            m.value = np.load(m.value, mmap_mode="r")
        names = list(results)
        for name in names[1:]:
            diff = float(np.abs(results[name].value - results[names[0]].value).max())
            print(f"max |{name} - {names[0]}| = {diff:.2e}")
            if diff > 1e-5:
                raise SystemExit(f"{name} disagrees with {names[0]} by {diff}")
    for name in names:
        if len(names) > 1 or args.repeats > 1:
            print(f"{name:18s} best {results[name].describe()}")
    if "reference" in results:
        for name in names[1:]:
            ref = results["reference"]
            print(f"speed-up {name} vs reference: {ref.seconds / results[name].seconds:.1f}x "
                  f"wall, {ref.cpu_seconds / results[name].cpu_seconds:.1f}x cpu, memory "
                  f"{ref.peak_gib / results[name].peak_gib:.1f}x less")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
