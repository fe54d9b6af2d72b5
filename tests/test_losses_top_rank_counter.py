"""Top-rank counter (TRC Eq. 4-6) and its vanilla/full phases (TRC Sec. IV)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from progreid.losses import metric_term, top_rank_counter, top_rank_counter_values
from progreid.losses.top_rank_counter import SATURATION, top_rank_counter_stats

PK_LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
IRREGULAR_LABELS = [3, 3, 8, 1, 3, 8, 5, 1, 1, 1]


def embed(labels: list[int], seed: int, dim: int = 4, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), dim, generator=gen, dtype=torch.float64) * scale
    return x.requires_grad_(True)


def logistic(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def reference_pairs(x: torch.Tensor, labels: list[int], k: float) -> list[tuple[float, float]]:
    """(Delta, S) of every anchor/positive pair, row-major."""
    rows, n = x.tolist(), len(labels)
    out = []
    for a in range(n):
        negatives = [math.dist(rows[a], rows[j]) for j in range(n) if labels[j] != labels[a]]
        for p in range(n):
            if p != a and labels[p] == labels[a] and negatives:
                delta = math.dist(rows[a], rows[p]) - min(negatives)
                out.append((delta, logistic(k * delta)))
    return out


def reference_trc(x: torch.Tensor, labels: list[int], k: float, phase: str) -> float:
    pairs = reference_pairs(x, labels, k)
    kept = [s for delta, s in pairs if phase == "full" or delta >= 0]
    return sum(kept) / len(pairs) if pairs else 0.0


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS])
@pytest.mark.parametrize("k", [0.5, 1.0, 10.0, 50.0, 100.0])
@pytest.mark.parametrize("phase", ["vanilla", "full"])
def test_equals_reference(labels: list[int], k: float, phase: str) -> None:
    x = embed(labels, seed=int(k))
    loss = top_rank_counter(x, torch.tensor(labels), k=k, phase=phase)
    assert loss.item() == pytest.approx(reference_trc(x, labels, k, phase), rel=1e-10, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=12),
       seed=st.integers(0, 2**31 - 1), k=st.floats(0.1, 100.0),
       phase=st.sampled_from(["vanilla", "full"]))
def test_equals_reference_on_any_batch(labels: list[int], seed: int, k: float,
                                       phase: str) -> None:
    x = embed(labels, seed)
    loss = top_rank_counter(x, torch.tensor(labels), k=k, phase=phase)
    expected = reference_trc(x, labels, k, phase)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    pairs = reference_pairs(x, labels, k)
    unsatisfied = sum(delta >= 0 for delta, _ in pairs)
    assert 0.0 <= loss.item() <= 1.0
    if phase == "vanilla" and pairs:
        assert loss.item() <= unsatisfied / len(pairs) + 1e-12
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_vanilla_ignores_exactly_the_satisfied_pairs() -> None:
    # Identity 0 is a tight cluster (its pairs satisfy the constraint); identity 1 has an outlier
    # that sits nearer identity 2 than to its own images (pairs through it are violated).
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0],
                      [5.0, 0.0], [5.1, 0.0], [9.0, 0.0],
                      [9.5, 0.0], [9.6, 0.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    values = top_rank_counter_values(x, labels, k=10.0)
    full = top_rank_counter(x, labels, k=10.0, phase="full")
    vanilla = top_rank_counter(x, labels, k=10.0, phase="vanilla")
    n_pairs = values.numel()
    assert full.item() * n_pairs == pytest.approx(values.sum().item())
    assert vanilla.item() * n_pairs == pytest.approx(values[values >= 0.5].sum().item())
    assert 0 < (values < 0.5).sum() < n_pairs
    vanilla.backward()
    assert torch.all(x.grad[:2] == 0)  # identity 0: all pairs satisfied, nearest negative is 2
    assert torch.any(x.grad[4] != 0)


def test_vanilla_is_zero_when_every_pair_is_top_rank() -> None:
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    vanilla = top_rank_counter(x, labels, phase="vanilla")
    vanilla.backward()
    assert vanilla.item() == 0.0 and torch.all(x.grad == 0)
    assert top_rank_counter(x, labels, phase="full").item() > 0


@pytest.mark.parametrize("phase", ["vanilla", "full"])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_finite_gradients_for_k100_large_distances_and_duplicates(phase: str,
                                                                  scale: float) -> None:
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    base = torch.randn(3, 16, generator=torch.Generator().manual_seed(4)) * scale
    x = base[[0, 0, 1, 1, 1, 2, 2, 0]].clone().requires_grad_(True)
    loss = top_rank_counter(x, torch.tensor(labels), k=100.0, phase=phase)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS, [0, 1, 2], [4, 4, 4]])
def test_values_are_detached_counters_of_every_pair(labels: list[int]) -> None:
    x = embed(labels, seed=5)
    values = top_rank_counter_values(x, torch.tensor(labels), k=10.0)
    assert not values.requires_grad
    expected = [s for _, s in reference_pairs(x, labels, 10.0)]
    assert values.tolist() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("labels", [[0, 1, 2], [4, 4, 4]])
def test_batch_without_pairs_gives_zero_and_zero_gradient(labels: list[int]) -> None:
    x = embed(labels, seed=6)
    loss = top_rank_counter(x, torch.tensor(labels))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(x.grad == 0)


@pytest.mark.parametrize(("params", "match"), [({"phase": "foo"}, "phase"), ({"k": 0.0}, "k"),
                                               ({"k": -1.0}, "k"), ({"k": float("inf")}, "k")])
def test_rejects_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        top_rank_counter(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), **params)


# ----------------------------------------------------------------------------- feature scale

def sphere(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Rows of ``x`` L2-normalised by plain arithmetic, times ``scale``."""
    return torch.stack([row / math.sqrt(sum(v * v for v in row.tolist())) for row in x]) * scale


@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS])
@pytest.mark.parametrize("scale", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("phase", ["vanilla", "full"])
def test_normalized_features_equal_reference_on_the_sphere(labels: list[int], scale: float,
                                                           phase: str) -> None:
    x = embed(labels, seed=7, scale=30.0)
    loss = top_rank_counter(x, torch.tensor(labels), k=10.0, phase=phase, features="normalized",
                            scale=scale)
    expected = reference_trc(sphere(x.detach(), scale), labels, 10.0, phase)
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("phase", ["vanilla", "full"])
def test_normalized_loss_ignores_the_feature_norm(phase: str) -> None:
    """On the sphere the loss cannot fall by shrinking or growing the embedding: it is the same
    for c x, and its gradient has no component along any feature (Euler's theorem)."""
    labels = torch.tensor(PK_LABELS)
    x = embed(PK_LABELS, seed=8)
    loss = top_rank_counter(x, labels, phase=phase, features="normalized", scale=2.0)
    loss.backward()
    for c in (0.01, 30.0):
        scaled = top_rank_counter(x.detach() * c, labels, phase=phase, features="normalized",
                                  scale=2.0)
        assert scaled.item() == pytest.approx(loss.item(), rel=1e-12)
    assert (x.grad * x.detach()).sum(dim=1).abs().max().item() < 1e-12
    assert x.grad.abs().max().item() > 0


def test_raw_scale_multiplies_k() -> None:
    """On raw features S depends on k * scale * Delta: scaling every feature by 0.01 is k / 100."""
    labels = torch.tensor(PK_LABELS)
    x = embed(PK_LABELS, seed=9, scale=30.0)
    assert top_rank_counter(x, labels, k=10.0, scale=0.01).item() == pytest.approx(
        top_rank_counter(x, labels, k=0.1).item(), rel=1e-12)
    assert top_rank_counter(x, labels, k=10.0, features="raw", scale=1.0).item() == (
        top_rank_counter(x, labels).item())  # the defaults are the paper's plain TRC


@pytest.mark.parametrize(("params", "match"), [
    ({"features": "l2"}, "features"), ({"scale": 0.0}, "scale"), ({"scale": -1.0}, "scale"),
    ({"scale": float("nan")}, "scale")])
def test_rejects_bad_feature_scales(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        top_rank_counter(torch.ones(4, 2), torch.tensor([0, 0, 1, 1]), **params)
    with pytest.raises(ValueError, match=match):
        metric_term("top_rank_counter", params)


def test_recipe_term_passes_features_and_scale() -> None:
    term = metric_term("top_rank_counter", {"k": 10.0, "features": "normalized", "scale": 2.0})
    x, labels = embed(PK_LABELS, seed=10), torch.tensor(PK_LABELS)
    assert term(x, labels).item() == top_rank_counter(x, labels, 10.0, "full", "normalized",
                                                      2.0).item()


# ----------------------------------------------------------------------------- logging stats

@pytest.mark.parametrize("labels", [PK_LABELS, IRREGULAR_LABELS, [0, 1, 2], [4, 4, 4]])
@pytest.mark.parametrize("phase", ["vanilla", "full"])
def test_stats_equal_reference(labels: list[int], phase: str) -> None:
    x = embed(labels, seed=11, scale=0.4)
    stats = top_rank_counter_stats(x, torch.tensor(labels), k=10.0, phase=phase)
    pairs = reference_pairs(x, labels, 10.0)
    assert stats.values.tolist() == pytest.approx([s for _, s in pairs], rel=1e-10)
    assert stats.saturated.tolist() == [abs(10.0 * delta) >= SATURATION for delta, _ in pairs]
    # per anchor with a pair: a pair the phase counts that is not saturated
    n, rows, active = len(labels), x.tolist(), []
    for a in range(n):
        negatives = [math.dist(rows[a], rows[j]) for j in range(n) if labels[j] != labels[a]]
        deltas = [math.dist(rows[a], rows[p]) - min(negatives) for p in range(n)
                  if p != a and labels[p] == labels[a] and negatives]
        if deltas:
            active.append(any(abs(10.0 * d) < SATURATION and (phase == "full" or d >= 0)
                              for d in deltas))
    assert stats.active.tolist() == active
    assert not stats.values.requires_grad
