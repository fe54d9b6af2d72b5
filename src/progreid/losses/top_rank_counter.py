"""The deep top-rank counter metric of TRC (Eq. 4-6) and its progressive phases (TRC Sec. IV)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from progreid.losses.checks import check_batch, check_finite
from progreid.losses.distances import pairwise_euclidean
from progreid.losses.mining import identity_masks, kth_masked, masked_sum

PHASES = ("vanilla", "full")


def _smooth_counters(embeddings: Tensor, labels: Tensor, k: float
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """B x B matrices ``(S, Delta, pairs)``: Delta[a, p] = d_ap - min_n d_an, S = sigmoid(k Delta)
    (TRC Eq. 4), and the mask of the anchor/positive pairs (a != p) where they are defined.

    ``torch.sigmoid`` saturates to exactly 0 or 1 with a zero gradient for large |k Delta|, so
    k = 100 and large distances stay finite. An anchor without a negative (only in a one-identity
    batch) has no pair.
    """
    check_batch(embeddings, labels)
    k = check_finite("k", k)
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k!r}")
    dist = pairwise_euclidean(embeddings)
    positive, negative = identity_masks(labels)
    near_negative, has_negative = kth_masked(dist, negative, 1, largest=False)
    delta = dist - near_negative[:, None]
    return torch.sigmoid(k * delta), delta, positive & has_negative[:, None]


def top_rank_counter(embeddings: Tensor, labels: Tensor, k: float = 10.0,
                     phase: Literal["vanilla", "full"] = "full") -> Tensor:
    """TRC Eq. 5-6 normalised: sum of S(a, p, N_a; k) over the anchor/positive pairs, divided by
    the number of all anchor/positive pairs in the batch.

    ``phase="full"`` sums every pair (TRC Sec. IV, phase 2); ``phase="vanilla"`` only the pairs
    that break the top-rank constraint, d_ap >= min_n d_an (phase 1), so satisfied pairs get no
    gradient. The loss lies in [0, 1]. A batch without pairs gives 0, still attached to the graph.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    counters, delta, pairs = _smooth_counters(embeddings, labels, k)
    counted = pairs & (delta >= 0) if phase == "vanilla" else pairs
    return masked_sum(counters, counted) / pairs.sum().clamp(min=1).to(counters.dtype)


def top_rank_counter_values(embeddings: Tensor, labels: Tensor, k: float = 10.0) -> Tensor:
    """Detached S values (TRC Eq. 4) of every anchor/positive pair, row-major: the loss-value
    distribution of TRC Fig. 3, for histogram logging."""
    with torch.no_grad():
        counters, _, pairs = _smooth_counters(embeddings, labels, k)
    return counters[pairs]
