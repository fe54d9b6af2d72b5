"""Pairwise distances of a batch of embeddings (PLA Sec. 3.2 D_{i,j}; TRC Sec. III d(.,.))."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from progreid.losses.checks import check_finite

Features = Literal["raw", "normalized"]
FEATURES: tuple[str, ...] = get_args(Features)


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


def loss_features(embeddings: Tensor, features: Features = "raw", scale: float = 1.0) -> Tensor:
    """The features whose distances a metric loss compares: ``raw``, the embeddings times
    ``scale``; ``normalized``, the L2-normalised embeddings times ``scale`` (a sphere of radius
    ``scale``, so distances lie in [0, 2 scale] whatever the backbone's feature norm)."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    scale = check_finite("scale", scale)
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if features == "normalized":
        embeddings = F.normalize(embeddings, dim=1)
    return embeddings * scale
