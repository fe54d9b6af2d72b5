"""Quadruplet loss (Chen et al. 2017) with batch-hard mining."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from progreid.losses import quadruplet


def embed(labels: list[int], seed: int, dim: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(len(labels), dim, generator=gen, dtype=torch.float64).requires_grad_(True)


def reference_quadruplet(x: torch.Tensor, labels: list[int], m1: float, m2: float) -> float:
    rows, n = x.tolist(), len(labels)
    terms = []
    for a in range(n):
        pos = [math.dist(rows[a], rows[j]) for j in range(n) if labels[j] == labels[a] and j != a]
        neg = [math.dist(rows[a], rows[j]) for j in range(n) if labels[j] != labels[a]]
        pairs = [math.dist(rows[i], rows[j]) for i in range(n) for j in range(n)
                 if labels[i] != labels[j] and labels[a] not in (labels[i], labels[j])]
        if pos and neg and pairs:
            terms.append(max(max(pos) - min(neg) + m1, 0.0) + max(max(pos) - min(pairs) + m2, 0.0))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("labels", [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
                                    [6, 2, 2, 9, 6, 5, 6, 2, 1, 9]])
@pytest.mark.parametrize(("m1", "m2"), [(0.3, 0.15), (0.0, 0.0), (1.0, 2.0), (-0.2, 0.5)])
def test_equals_reference(labels: list[int], m1: float, m2: float) -> None:
    x = embed(labels, seed=1)
    loss = quadruplet(x, torch.tensor(labels), margin1=m1, margin2=m2)
    assert loss.item() == pytest.approx(reference_quadruplet(x, labels, m1, m2), rel=1e-10)


def test_normalized_features_equal_reference_on_the_unit_sphere() -> None:
    """``features="normalized"``: the reference on the rows divided by their norms, whatever the
    embeddings' scale."""
    labels = [6, 2, 2, 9, 6, 5, 6, 2, 1, 9]
    x = embed(labels, seed=3) * 30.0
    unit = torch.tensor([[v / math.hypot(*row) for v in row] for row in x.tolist()],
                        dtype=torch.float64)
    loss = quadruplet(x, torch.tensor(labels), features="normalized")
    assert loss.item() == pytest.approx(reference_quadruplet(unit, labels, 0.3, 0.15), rel=1e-9)
    rescaled = quadruplet(x.detach() * 0.01, torch.tensor(labels), features="normalized")
    assert rescaled.item() == pytest.approx(loss.item(), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=12),
       seed=st.integers(0, 2**31 - 1), m1=st.floats(0.0, 1.0), m2=st.floats(0.0, 1.0))
def test_equals_reference_on_any_batch(labels: list[int], seed: int, m1: float,
                                       m2: float) -> None:
    x = embed(labels, seed)
    loss = quadruplet(x, torch.tensor(labels), margin1=m1, margin2=m2)
    assert loss.item() == pytest.approx(reference_quadruplet(x, labels, m1, m2), rel=1e-9,
                                        abs=1e-12)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_two_identities_have_no_negative_pair_so_loss_is_zero() -> None:
    x = embed([0, 0, 1, 1], seed=2)
    loss = quadruplet(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)


def test_finite_gradients_with_duplicate_embeddings() -> None:
    base = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    x = base[[0, 0, 1, 1, 2, 2, 2]].clone().requires_grad_(True)
    loss = quadruplet(x, torch.tensor([0, 0, 1, 1, 2, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("params", [{"margin1": float("inf")}, {"margin2": "0.1"}])
def test_rejects_bad_margins(params: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        quadruplet(torch.zeros(6, 2), torch.tensor([0, 0, 1, 1, 2, 2]), **params)
