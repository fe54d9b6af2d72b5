"""The deep top-rank counter metric of TRC (Eq. 4-6) and its progressive phases (TRC Sec. IV).

S = sigmoid(k * Delta) only approximates the counter H of Eq. 3 while k * Delta stays within a
few units of 0: k = 10 was chosen (Table I) for the paper's ResNet-50 features, and on features
whose distances are tens of units (an ImageNet MobileNetV2's pooled features: norm about 30)
almost every pair sits on a flat end of the logistic, with no gradient. ``features`` and
``scale`` fix the feature scale the counter sees: ``raw`` is the paper's plain TRC (distances
between the features as they come), ``normalized`` measures them between L2-normalised features
times ``scale`` (a sphere of radius ``scale``), so that k means the same whatever the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from progreid.losses.checks import check_batch, check_finite
from progreid.losses.distances import Features, loss_features, pairwise_euclidean
from progreid.losses.mining import identity_masks, kth_masked, masked_sum

PHASES = ("vanilla", "full")
#: |k Delta| from which a pair counts as saturated: S (1 - S) < 0.0067, under 3 % of the
#: logistic's slope at 0, so the pair's gradient is negligible.
SATURATION = 5.0

Phase = Literal["vanilla", "full"]


def _smooth_counters(embeddings: Tensor, labels: Tensor, k: float, features: Features,
                     scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """B x B matrices ``(S, Delta, pairs)``: Delta[a, p] = d_ap - min_n d_an on
    :func:`~progreid.losses.distances.loss_features`, S = sigmoid(k Delta) (TRC Eq. 4), and
    the mask of the anchor/positive pairs (a != p) where they are defined.

    ``torch.sigmoid`` saturates to exactly 0 or 1 with a zero gradient for large |k Delta|, so
    k = 100 and large distances stay finite. An anchor without a negative (only in a one-identity
    batch) has no pair.
    """
    check_batch(embeddings, labels)
    k = check_finite("k", k)
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k!r}")
    dist = pairwise_euclidean(loss_features(embeddings, features, scale))
    positive, negative = identity_masks(labels)
    near_negative, has_negative = kth_masked(dist, negative, 1, largest=False)
    delta = dist - near_negative[:, None]
    return torch.sigmoid(k * delta), delta, positive & has_negative[:, None]


def _counted(delta: Tensor, pairs: Tensor, phase: Phase) -> Tensor:
    """The pairs a phase sums (TRC Sec. IV): all of them ("full"), or only those breaking the
    top-rank constraint, d_ap >= min_n d_an ("vanilla")."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    return pairs & (delta >= 0) if phase == "vanilla" else pairs


def top_rank_counter(embeddings: Tensor, labels: Tensor, k: float = 10.0, phase: Phase = "full",
                     features: Features = "raw", scale: float = 1.0) -> Tensor:
    """TRC Eq. 5-6 normalised: sum of S(a, p, N_a; k) over the anchor/positive pairs, divided by
    the number of all anchor/positive pairs in the batch, on the
    :func:`~progreid.losses.distances.loss_features`.

    ``phase="full"`` sums every pair (TRC Sec. IV, phase 2); ``phase="vanilla"`` only the pairs
    that break the top-rank constraint, d_ap >= min_n d_an (phase 1), so satisfied pairs get no
    gradient. The loss lies in [0, 1]. A batch without pairs gives 0, still attached to the graph.
    The defaults (k = 10, raw features) are the paper's.
    """
    counters, delta, pairs = _smooth_counters(embeddings, labels, k, features, scale)
    return (masked_sum(counters, _counted(delta, pairs, phase))
            / pairs.sum().clamp(min=1).to(counters.dtype))


@dataclass(frozen=True)
class CounterStats:
    """Detached TRC Eq. 4 of one batch, for logging: ``values``, the S of every anchor/positive
    pair (row-major); ``saturated``, which of them have |k Delta| >= :data:`SATURATION`;
    ``active``, for every anchor with a pair, whether the phase counts one of its pairs that is
    not saturated (the anchors the loss gives a gradient)."""

    values: Tensor
    saturated: Tensor
    active: Tensor


def top_rank_counter_stats(embeddings: Tensor, labels: Tensor, k: float = 10.0,
                           phase: Phase = "full", features: Features = "raw",
                           scale: float = 1.0) -> CounterStats:
    """:class:`CounterStats` of a batch under the loss's parameters: the loss-value distribution
    of TRC Fig. 3 and how much of it the logistic's flat ends hide from the gradient."""
    with torch.no_grad():
        counters, delta, pairs = _smooth_counters(embeddings, labels, k, features, scale)
        saturated = k * delta.abs() >= SATURATION
        live = _counted(delta, pairs, phase) & ~saturated
        return CounterStats(counters[pairs], saturated[pairs], live.any(dim=1)[pairs.any(dim=1)])


def top_rank_counter_values(embeddings: Tensor, labels: Tensor, k: float = 10.0,
                            features: Features = "raw", scale: float = 1.0) -> Tensor:
    """Detached S values (TRC Eq. 4) of every anchor/positive pair, row-major."""
    return top_rank_counter_stats(embeddings, labels, k, features=features, scale=scale).values
