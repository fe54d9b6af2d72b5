"""cross_entropy_label_smooth and composite_loss (PLA Eq. 5)."""

from __future__ import annotations

import math

import pytest
import torch

from progreid.losses import composite_loss, cross_entropy_label_smooth


def reference_smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> float:
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        classes = len(row)
        for c, value in enumerate(row):
            target = (1 - epsilon) * (c == label) + epsilon / classes
            total -= target * (value - log_z)
    return total / len(labels)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5])
def test_cross_entropy_equals_reference(epsilon: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=gen, dtype=torch.float64) * 4
    labels = torch.randint(0, 5, (7,), generator=gen)
    loss = cross_entropy_label_smooth(logits, labels, epsilon)
    assert loss.item() == pytest.approx(reference_smoothed_ce(logits, labels, epsilon), rel=1e-12)


@pytest.mark.parametrize("epsilon", [-0.1, 1.0, float("nan")])
def test_cross_entropy_rejects_bad_epsilon(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy_label_smooth(torch.zeros(2, 3), torch.tensor([0, 1]), epsilon)


def test_cross_entropy_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="logits"):
        cross_entropy_label_smooth(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


def test_composite_loss_is_ce_plus_weighted_metric() -> None:
    ce, metric = torch.tensor(1.25), torch.tensor(0.5)
    assert composite_loss(ce, metric, 1.5).item() == pytest.approx(2.0)
    assert composite_loss(ce, metric, 0.0).item() == pytest.approx(1.25)


def test_composite_loss_rejects_negative_weight() -> None:
    with pytest.raises(ValueError, match="lam"):
        composite_loss(torch.tensor(1.0), torch.tensor(1.0), -0.5)
