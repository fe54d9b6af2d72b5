"""Triplet family: generalized batch-hard (PLA Eq. 3-4), batch-hard, FaceNet random triplets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from progreid.losses import (
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    random_triplet,
    sample_random_triplets,
)

PK_LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
IRREGULAR_LABELS = [4, 1, 1, 7, 4, 4, 1, 9, 7, 4, 2]  # singletons 9 and 2, variable counts


def embed(labels: list[int], seed: int, dim: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(len(labels), dim, generator=gen, dtype=torch.float64).requires_grad_(True)


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def reference_anchor_gaps(x: torch.Tensor, labels: list[int], k: int, p: int) -> list[float]:
    """Per valid anchor: k-th largest positive distance - p-th smallest negative distance."""
    rows = x.tolist()
    gaps = []
    for a, label in enumerate(labels):
        pos = sorted((math.dist(rows[a], rows[j]) for j, lb in enumerate(labels)
                      if lb == label and j != a), reverse=True)
        neg = sorted(math.dist(rows[a], rows[j]) for j, lb in enumerate(labels) if lb != label)
        if pos and neg:
            gaps.append(pos[min(k, len(pos)) - 1] - neg[min(p, len(neg)) - 1])
    return gaps


def reference_gbh(x: torch.Tensor, labels: list[int], k: int, p: int, margin: float) -> float:
    gaps = reference_anchor_gaps(x, labels, k, p)
    return sum(softplus(margin + g) for g in gaps) / len(gaps) if gaps else 0.0


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("p", [1, 2, 5, 16])
@pytest.mark.parametrize("margin", [-0.1, 0.0, 0.3])
def test_generalized_batch_hard_equals_reference(labels: list[int], k: int, p: int,
                                                 margin: float) -> None:
    x = embed(labels, seed=k * 100 + p)
    loss = generalized_batch_hard_triplet(x, torch.tensor(labels), k=k, p=p, margin=margin)
    assert loss.item() == pytest.approx(reference_gbh(x, labels, k, p, margin), rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=14),
       seed=st.integers(0, 2**31 - 1), k=st.integers(1, 6), p=st.integers(1, 12),
       margin=st.floats(-0.5, 1.0))
def test_generalized_batch_hard_equals_reference_on_any_batch(labels: list[int], seed: int,
                                                              k: int, p: int,
                                                              margin: float) -> None:
    x = embed(labels, seed)
    loss = generalized_batch_hard_triplet(x, torch.tensor(labels), k=k, p=p, margin=margin)
    assert loss.item() == pytest.approx(reference_gbh(x, labels, k, p, margin), rel=1e-9,
                                        abs=1e-12)
    loss.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS])
def test_k1_p1_margin0_is_soft_margin_batch_hard(labels: list[int]) -> None:
    x, y = embed(labels, seed=5), torch.tensor(labels)
    torch.testing.assert_close(generalized_batch_hard_triplet(x, y),
                               batch_hard_triplet(x, y, margin=None))
    gaps = reference_anchor_gaps(x, labels, 1, 1)
    assert batch_hard_triplet(x, y, margin=None).item() == pytest.approx(
        sum(softplus(g) for g in gaps) / len(gaps), rel=1e-10)


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS])
@pytest.mark.parametrize("margin", [0.0, 0.3, 1.5])
def test_batch_hard_hinge_equals_reference(labels: list[int], margin: float) -> None:
    x = embed(labels, seed=6)
    gaps = reference_anchor_gaps(x, labels, 1, 1)
    expected = sum(max(margin + g, 0.0) for g in gaps) / len(gaps)
    loss = batch_hard_triplet(x, torch.tensor(labels), margin=margin)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS])
@pytest.mark.parametrize("margin", [None, 0.3])
def test_batch_hard_on_normalized_features_measures_cosine_distances(labels: list[int],
                                                                     margin: float | None) -> None:
    """On the unit sphere |a - b| = sqrt(2 - 2 cos(a, b)): the reference works from cosines."""
    x = embed(labels, seed=8) * 30.0
    rows = x.tolist()
    norms = [math.sqrt(sum(v * v for v in row)) for row in rows]

    def chord(a: int, b: int) -> float:
        cos = sum(u * v for u, v in zip(rows[a], rows[b], strict=True)) / (norms[a] * norms[b])
        return math.sqrt(max(2.0 - 2.0 * cos, 0.0))

    gaps = []
    for a, label in enumerate(labels):
        pos = [chord(a, j) for j, lb in enumerate(labels) if lb == label and j != a]
        neg = [chord(a, j) for j, lb in enumerate(labels) if lb != label]
        if pos and neg:
            gaps.append(max(pos) - min(neg))
    per_anchor = [softplus(g) if margin is None else max(margin + g, 0.0) for g in gaps]
    loss = batch_hard_triplet(x, torch.tensor(labels), margin=margin, features="normalized")
    assert loss.item() == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-9)
    rescaled = batch_hard_triplet(x.detach() * 0.01, torch.tensor(labels), margin=margin,
                                  features="normalized")
    assert rescaled.item() == pytest.approx(loss.item(), rel=1e-9)


@pytest.mark.parametrize("loss_fn", [generalized_batch_hard_triplet, batch_hard_triplet,
                                     random_triplet])
def test_finite_gradients_with_duplicate_embeddings(loss_fn) -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    base = torch.randn(3, 8, generator=torch.Generator().manual_seed(7))
    x = base[[0, 0, 1, 1, 1, 2]].clone().requires_grad_(True)  # same- and cross-identity copies
    loss = loss_fn(x, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5], [3]])
@pytest.mark.parametrize("loss_fn", [generalized_batch_hard_triplet, batch_hard_triplet,
                                     random_triplet])
def test_batch_without_triplets_gives_zero_and_zero_gradient(labels: list[int], loss_fn) -> None:
    x = embed(labels, seed=8)
    loss = loss_fn(x, torch.tensor(labels))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(x.grad == 0)


@pytest.mark.parametrize("params", [{"k": 0}, {"p": 0}, {"k": 1.5}, {"p": True},
                                    {"margin": float("nan")}, {"margin": None}])
def test_generalized_batch_hard_rejects_bad_parameters(params: dict) -> None:
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        generalized_batch_hard_triplet(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), **params)


@pytest.mark.parametrize(("embeddings", "labels", "match"), [
    (torch.zeros(4), torch.tensor([0, 0, 1, 1]), "embeddings"),
    (torch.zeros(4, 2), torch.tensor([0.0, 0.0, 1.0, 1.0]), "labels"),
    (torch.zeros(4, 2), torch.tensor([0, 0, 1]), "same"),
    (torch.zeros(0, 2), torch.tensor([], dtype=torch.long), "non-zero"),
])
def test_bad_batches_are_rejected(embeddings: torch.Tensor, labels: torch.Tensor,
                                  match: str) -> None:
    with pytest.raises(ValueError, match=match):
        batch_hard_triplet(embeddings, labels)


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS, [0, 0, 0], [1, 2]])
def test_random_triplets_are_valid_and_cover_every_positive_pair(labels: list[int]) -> None:
    y = torch.tensor(labels)
    anchor, pos, neg = sample_random_triplets(y, torch.Generator().manual_seed(0))
    expected_pairs = [(a, b) for a in range(len(labels)) for b in range(len(labels))
                      if a != b and labels[a] == labels[b] and len(set(labels)) > 1]
    assert list(zip(anchor.tolist(), pos.tolist(), strict=True)) == expected_pairs
    for a, n in zip(anchor.tolist(), neg.tolist(), strict=True):
        assert labels[n] != labels[a]


def test_random_triplets_are_deterministic_and_reach_every_negative() -> None:
    y = torch.tensor(IRREGULAR_LABELS)
    first = sample_random_triplets(y, torch.Generator().manual_seed(3))
    again = sample_random_triplets(y, torch.Generator().manual_seed(3))
    for u, v in zip(first, again, strict=True):
        assert torch.equal(u, v)
    gen = torch.Generator().manual_seed(4)
    seen: set[int] = set()
    for _ in range(200):
        anchor, _, neg = sample_random_triplets(y, gen)
        seen.update(neg[anchor == 0].tolist())
    assert seen == {i for i, lb in enumerate(IRREGULAR_LABELS) if lb != IRREGULAR_LABELS[0]}


def reference_random_triplet(rows: list[list[float]], labels: torch.Tensor, margin: float,
                             seed: int) -> float:
    """The mean hinge over the triplets ``sample_random_triplets`` draws with ``seed``, the
    distances taken between ``rows`` in plain Python."""
    anchor, pos, neg = sample_random_triplets(labels, torch.Generator().manual_seed(seed))
    hinges = [max(math.dist(rows[a], rows[p]) - math.dist(rows[a], rows[n]) + margin, 0.0)
              for a, p, n in zip(anchor.tolist(), pos.tolist(), neg.tolist(), strict=True)]
    return sum(hinges) / len(hinges)


@pytest.mark.parametrize("margin", [0.0, 0.3, 2.0])
def test_random_triplet_equals_reference_on_its_sampled_triplets(margin: float) -> None:
    x, y = embed(IRREGULAR_LABELS, seed=9), torch.tensor(IRREGULAR_LABELS)
    loss = random_triplet(x, y, margin=margin, generator=torch.Generator().manual_seed(11))
    expected = reference_random_triplet(x.tolist(), y, margin, seed=11)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_random_triplet_on_normalized_features_ignores_the_feature_norm() -> None:
    """With ``features="normalized"`` the distances are chords of the unit sphere, computed here
    from the normalised rows, and rescaling the embeddings changes nothing."""
    x, y = embed(IRREGULAR_LABELS, seed=12) * 30.0, torch.tensor(IRREGULAR_LABELS)
    loss = random_triplet(x, y, margin=0.3, features="normalized",
                          generator=torch.Generator().manual_seed(5))
    unit_rows = [[v / math.hypot(*row) for v in row] for row in x.tolist()]
    expected = reference_random_triplet(unit_rows, y, 0.3, seed=5)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    rescaled = random_triplet(x.detach() * 0.01, y, margin=0.3, features="normalized",
                              generator=torch.Generator().manual_seed(5))
    assert rescaled.item() == pytest.approx(loss.item(), rel=1e-9)
