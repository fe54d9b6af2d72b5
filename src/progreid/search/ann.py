"""Approximate search for large galleries: a FAISS inverted-file index (IVF-Flat), with the
number of probed lists chosen by a recall check against exact search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progreid.errors import MissingFaissError
from progreid.search.ranking import exact_top_k
from progreid.utils.io import atomic_path

RECALL_TARGET = 0.95
RECALL_K = 10
POINTS_PER_LIST = 39  # FAISS warns when k-means gets fewer training points per centroid


def require_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise MissingFaissError("approximate search needs faiss, the 'search' extra: "
                                "pip install 'progreid[search]'") from exc
    return faiss


def default_nlist(count: int) -> int:
    """About ``4 sqrt(N)`` lists, but at least 39 training points per list."""
    return max(1, min(round(4 * math.sqrt(count)), count // POINTS_PER_LIST))


def build_ivf(features: np.ndarray, nlist: int | None = None, seed: int = 0) -> Any:
    """Train an L2 ``IndexIVFFlat`` on ``features`` (N x D float32) and add them (ids 0..N-1)."""
    faiss = require_faiss()
    features = np.ascontiguousarray(features, dtype=np.float32)
    nlist = nlist or default_nlist(len(features))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(features.shape[1]), features.shape[1], nlist,
                               faiss.METRIC_L2)
    index.cp.seed = seed
    index.train(features)
    index.add(features)
    return index


def add_vectors(index: Any, features: np.ndarray) -> None:
    """Append vectors without retraining (their ids continue from ``index.ntotal``)."""
    index.add(np.ascontiguousarray(features, dtype=np.float32))


def ann_top_k(index: Any, queries: np.ndarray, k: int,
              nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """``(euclidean distances, indices)`` of the ``k`` nearest stored vectors per query;
    FAISS pads missing results with index -1 (only when fewer than k vectors are probed)."""
    index.nprobe = nprobe
    squared, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.sqrt(np.maximum(squared, 0.0)), ids


def overlap(exact: np.ndarray, approx: np.ndarray) -> float:
    """Mean fraction of each row of ``exact`` (Q x k indices) found in the same row of
    ``approx``: recall@k."""
    hits = [len(set(e.tolist()) & set(a.tolist())) / len(e)
            for e, a in zip(exact, approx, strict=True)]
    return float(np.mean(hits))


def exact_ids(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return exact_top_k(torch.from_numpy(queries), torch.from_numpy(gallery), k)[1].numpy()


def recall_at_k(index: Any, gallery: np.ndarray, queries: np.ndarray, k: int = RECALL_K,
                nprobe: int = 1) -> float:
    """Recall@k of the FAISS index against exact search in torch (:func:`exact_top_k`)."""
    return overlap(exact_ids(gallery, queries, k), ann_top_k(index, queries, k, nprobe)[1])


def tune_nprobe(index: Any, gallery: np.ndarray, queries: np.ndarray, k: int = RECALL_K,
                target: float = RECALL_TARGET) -> tuple[int, float]:
    """The smallest power-of-two ``nprobe`` (up to all lists, which is exact) whose recall@k
    on ``queries`` reaches ``target``; returns it with the measured recall."""
    exact = exact_ids(gallery, queries, k)
    nprobe = 1
    while True:
        recall = overlap(exact, ann_top_k(index, queries, k, nprobe)[1])
        if recall >= target or nprobe >= index.nlist:
            return nprobe, recall
        nprobe = min(2 * nprobe, index.nlist)


def write_ann(index: Any, path: str | Path) -> None:
    faiss = require_faiss()
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def read_ann(path: str | Path) -> Any:
    return require_faiss().read_index(str(path))
