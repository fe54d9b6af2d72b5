"""The composite objective of PLA Eq. 5."""

from __future__ import annotations

from torch import Tensor

from progreid.losses.checks import check_finite


def composite_loss(ce: Tensor, metric: Tensor, lam: float) -> Tensor:
    """PLA Eq. 5: ``L = L_softmax + lambda * L_metric`` (lambda >= 0; the paper searches [0, 2])."""
    if check_finite("lam", lam) < 0:
        raise ValueError(f"lam (lambda of PLA Eq. 5) must be >= 0, got {lam!r}")
    return ce + lam * metric
