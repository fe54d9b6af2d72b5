"""The triplet family: Hermans' batch-hard, PLA's generalized batch-hard, FaceNet's random triplets.

All use plain (not squared) Euclidean distances. Positives never include the anchor itself. An
anchor with no positive in the batch (a singleton identity) or no negative (a one-identity batch)
forms no triplet and is left out of the average; a batch with no triplet at all gives a loss of 0
that is still attached to the graph, so ``backward()`` works and yields zero gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from progreid.losses.checks import check_batch, check_finite, check_int_at_least
from progreid.losses.distances import Features, loss_features, pairwise_euclidean
from progreid.losses.mining import identity_masks, kth_masked, masked_mean


def _generalized_gaps(embeddings: Tensor, labels: Tensor, k: int, p: int,
                      features: Features = "raw") -> tuple[Tensor, Tensor]:
    """Per anchor T_{k,p} = Largest^k(D_ab) - Smallest^p(D_an) (PLA Eq. 4) on the
    :func:`~progreid.losses.distances.loss_features`, and its validity mask."""
    dist = pairwise_euclidean(loss_features(embeddings, features))
    positive, negative = identity_masks(labels)
    far_positive, has_positive = kth_masked(dist, positive, k, largest=True)
    near_negative, has_negative = kth_masked(dist, negative, p, largest=False)
    return far_positive - near_negative, has_positive & has_negative


def generalized_batch_hard_triplet(embeddings: Tensor, labels: Tensor, k: int = 1, p: int = 1,
                                   margin: float = 0.0) -> Tensor:
    """PLA Eq. 3-4: mean over anchors of softplus(margin + k-th largest positive distance
    - p-th smallest negative distance).

    k and p are clamped to each anchor's number of positives / negatives, so irregular (non-PK)
    batches work. k = p = 1, margin = 0 is Hermans' soft-margin batch-hard loss.
    """
    check_batch(embeddings, labels)
    k = check_int_at_least("k", k, 1)
    p = check_int_at_least("p", p, 1)
    margin = check_finite("margin", margin)
    gaps, valid = _generalized_gaps(embeddings, labels, k, p)
    return masked_mean(F.softplus(margin + gaps), valid)


def batch_hard_triplet(embeddings: Tensor, labels: Tensor, margin: float | None = 0.3,
                       features: Features = "raw") -> Tensor:
    """Hermans et al.'s batch-hard triplet loss (PLA Eq. 2; TRC Table III "Hard triplet").

    Per anchor ``[margin + hardest positive - hardest negative]_+``, averaged over anchors;
    ``margin=None`` is the soft margin ``softplus(hardest positive - hardest negative)``.
    ``features="normalized"`` measures the distances between L2-normalised embeddings, so the
    margin is in units of the unit sphere's (distances in [0, 2]) whatever the feature norm.
    """
    check_batch(embeddings, labels)
    gaps, valid = _generalized_gaps(embeddings, labels, 1, 1, features)
    if margin is None:
        return masked_mean(F.softplus(gaps), valid)
    return masked_mean(F.relu(check_finite("margin", margin) + gaps), valid)


def sample_random_triplets(labels: Tensor, generator: torch.Generator | None = None
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """Index vectors ``(anchor, positive, negative)`` of FaceNet-style random triplets.

    Every anchor/positive pair (a, p), a != p, of the batch appears once (row-major order), with
    one negative drawn uniformly from the anchor's negatives. Anchors without a negative form no
    triplet. Deterministic for a seeded ``generator`` (on any device; indices end on the labels'
    device).
    """
    positive, negative = identity_masks(labels)
    positive &= negative.any(dim=1, keepdim=True)
    anchor, pos = positive.nonzero(as_tuple=True)
    device = labels.device if generator is None else generator.device
    draws = torch.rand(anchor.shape[0], labels.shape[0], generator=generator, device=device)
    draws = draws.to(labels.device).masked_fill(~negative[anchor], -1.0)
    return anchor, pos, draws.argmax(dim=1)


def random_triplet(embeddings: Tensor, labels: Tensor, margin: float = 0.3,
                   features: Features = "raw",
                   generator: torch.Generator | None = None) -> Tensor:
    """FaceNet's triplet loss on random triplets (TRC Table III "Triplet").

    ``[d_ap - d_an + margin]_+`` averaged over the triplets of :func:`sample_random_triplets`:
    every anchor/positive pair with a uniformly sampled negative of the anchor, the distances
    measured between the :func:`~progreid.losses.distances.loss_features`.
    """
    check_batch(embeddings, labels)
    margin = check_finite("margin", margin)
    anchor, pos, neg = sample_random_triplets(labels, generator)
    dist = pairwise_euclidean(loss_features(embeddings, features))
    hinge = F.relu(dist[anchor, pos] - dist[anchor, neg] + margin)
    return hinge.sum() / max(hinge.numel(), 1)
