"""Exact top-k search in torch, and k-reciprocal re-ranking of a shortlist."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Metric = Literal["euclidean", "cosine"]
METRICS = ("euclidean", "cosine")


def prepare(features: torch.Tensor, metric: str) -> torch.Tensor:
    """float32 features in the space where Euclidean distance ranks as ``metric`` does:
    unchanged for ``euclidean``, L2-normalised for ``cosine`` (then ``d^2 = 2 - 2 cos``)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    features = features.float()
    return F.normalize(features, dim=1) if metric == "cosine" else features


def check_pair(queries: torch.Tensor, gallery: torch.Tensor, k: int) -> None:
    if queries.dim() != 2 or gallery.dim() != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} "
                         "must be 2-D with the same feature dimension")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def exact_top_k(queries: torch.Tensor, gallery: torch.Tensor,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``min(k, N)`` nearest gallery rows of each query by Euclidean distance, computed
    directly (no matrix-product shortcut), nearest first; ties ordered by gallery index.

    Returns ``(distances, indices)``, both ``Q x min(k, N)``.
    """
    check_pair(queries, gallery, k)
    distances = torch.cdist(queries.float(), gallery.float(),
                            compute_mode="donot_use_mm_for_euclid_dist")
    return top_k_of(distances, k)


def top_k_of(distances: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest ``min(k, N)`` entries of each row of a ``Q x N`` distance matrix (stable)."""
    order = torch.sort(distances, dim=1, stable=True).indices[:, :k]
    return distances.gather(1, order), order


def rerank_top_k(queries: torch.Tensor, gallery: torch.Tensor, k: int, k1: int = 20,
                 k2: int = 6, lambda_value: float = 0.3,
                 pool: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k after k-reciprocal re-ranking (Zhong et al. 2017) over a shortlist: the union of
    every query's ``pool`` nearest gallery rows (the whole gallery when it is no larger).

    Returns the re-ranked final distances and gallery indices, both ``Q x min(k, C)``.
    """
    from progreid.evaluation.rerank import re_rank_features

    check_pair(queries, gallery, k)
    if gallery.shape[0] <= pool:
        candidates = torch.arange(gallery.shape[0])
    else:
        candidates = torch.unique(exact_top_k(queries, gallery, pool)[1])
    final = torch.as_tensor(re_rank_features(queries, gallery[candidates], k1=k1, k2=k2,
                                             lambda_value=lambda_value))
    distances, order = top_k_of(final, k)
    return distances, candidates[order]
