"""Chen et al.'s quadruplet loss (CVPR 2017) with batch-hard mining (TRC Table III "Quadruplet")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from progreid.losses.checks import check_batch, check_finite
from progreid.losses.distances import Features, loss_features, pairwise_euclidean
from progreid.losses.mining import identity_masks, kth_masked, masked_mean


def _hardest_negative_pairs(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per anchor, min d_{n1 n2} over pairs of different identities that both differ from the
    anchor's (TRC Sec. III-A), and whether such a pair exists."""
    identities, inverse = torch.unique(labels, return_inverse=True)
    _, negative = identity_masks(labels)
    outside = labels[None, :] != identities[:, None]                  # U x B
    allowed = negative[None] & outside[:, :, None] & outside[:, None, :]  # U x B x B
    per_identity = dist[None].masked_fill(~allowed, float("inf")).amin(dim=(1, 2))
    exists = allowed.flatten(1).any(dim=1)
    per_identity = torch.where(exists, per_identity, torch.zeros_like(per_identity))
    return per_identity[inverse], exists[inverse]


def quadruplet(embeddings: Tensor, labels: Tensor, margin1: float = 0.3,
               margin2: float = 0.15, features: Features = "raw") -> Tensor:
    """Quadruplet loss with batch-hard mining, averaged over anchors.

    Per anchor a: d_ap = largest distance to a positive (not a itself), d_an = smallest distance to
    a negative, d_n1n2 = smallest distance between two samples of different identities that both
    differ from a's identity (the hardest negative pair); the term is
    ``[d_ap - d_an + margin1]_+ + [d_ap - d_n1n2 + margin2]_+``. Plain Euclidean distances
    between the :func:`~progreid.losses.distances.loss_features` (``raw`` or ``normalized``).
    Anchors lacking a positive, a negative or a negative pair (a batch with fewer than three
    identities) are left out; with none left the loss is 0, still attached to the graph.
    """
    check_batch(embeddings, labels)
    margin1 = check_finite("margin1", margin1)
    margin2 = check_finite("margin2", margin2)
    dist = pairwise_euclidean(loss_features(embeddings, features))
    positive, negative = identity_masks(labels)
    far_positive, has_positive = kth_masked(dist, positive, 1, largest=True)
    near_negative, _ = kth_masked(dist, negative, 1, largest=False)
    near_pair, has_pair = _hardest_negative_pairs(dist, labels)  # a pair implies a negative
    terms = (F.relu(far_positive - near_negative + margin1)
             + F.relu(far_positive - near_pair + margin2))
    return masked_mean(terms, has_positive & has_pair)
