"""pairwise_euclidean: exact plain Euclidean distances, finite gradients at zero distance."""

from __future__ import annotations

import math

import pytest
import torch

from progreid.losses import pairwise_euclidean


def reference_distances(x: torch.Tensor) -> list[list[float]]:
    rows = x.tolist()
    return [[math.dist(a, b) for b in rows] for a in rows]


def test_equals_loop_reference() -> None:
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.tensor(reference_distances(x), dtype=torch.float64)
    torch.testing.assert_close(pairwise_euclidean(x), expected, rtol=1e-12, atol=1e-12)


def test_duplicates_are_exactly_zero_with_finite_gradient() -> None:
    base = torch.randn(4, 16, generator=torch.Generator().manual_seed(1)) * 100
    x = torch.cat([base, base[:2]]).requires_grad_(True)
    dist = pairwise_euclidean(x)
    assert torch.all(dist.diagonal() == 0)
    assert dist[0, 4] == 0 and dist[1, 5] == 0
    weights = torch.rand(6, 6, generator=torch.Generator().manual_seed(2))
    (dist * weights).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_equals_analytic_subgradient() -> None:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = torch.cat([x, x[:1]]).requires_grad_(True)
    weights = torch.rand(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (pairwise_euclidean(x) * weights).sum().backward()
    expected = torch.zeros_like(x)
    for i in range(6):
        for j in range(6):
            diff = x[i].detach() - x[j].detach()
            norm = diff.norm()
            if norm > 0:  # zero-distance pairs contribute the zero subgradient
                expected[i] += (weights[i, j] + weights[j, i]) * diff / norm
    torch.testing.assert_close(x.grad, expected)


def test_rejects_non_matrix() -> None:
    with pytest.raises(ValueError, match="2-D"):
        pairwise_euclidean(torch.zeros(3))
