"""Pairwise distances of a batch of embeddings (PLA Sec. 3.2 D_{i,j}; TRC Sec. III d(.,.))."""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_euclidean(x: Tensor) -> Tensor:
    """B x B plain (not squared) Euclidean distances between the rows of ``x`` (B x D).

    Computed pair by pair rather than through the Gram matrix, so equal rows (and the diagonal)
    are exactly 0 and not a rounding residue; at zero distance the gradient is 0 (a valid
    subgradient of the norm), never NaN or infinite.
    """
    if x.dim() != 2:
        raise ValueError(f"pairwise_euclidean expects a 2-D tensor (B x D), got shape "
                         f"{tuple(x.shape)}")
    return torch.cdist(x, x, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
