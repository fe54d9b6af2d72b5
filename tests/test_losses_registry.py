"""Metric losses by name: dispatch and clear errors for unknown names and parameters."""

from __future__ import annotations

import pytest
import torch

from progreid.losses import (
    METRIC_LOSSES,
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    metric_loss,
    metric_loss_params,
    quadruplet,
    random_triplet,
    top_rank_counter,
)

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
EMBEDDINGS = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))


def test_registry_names() -> None:
    expected = {
        "batch_hard": batch_hard_triplet,
        "generalized_batch_hard": generalized_batch_hard_triplet,
        "triplet": random_triplet,
        "quadruplet": quadruplet,
        "top_rank_counter": top_rank_counter,
    }
    assert expected == METRIC_LOSSES
    assert metric_loss_params("generalized_batch_hard") == ("k", "p", "margin")


@pytest.mark.parametrize(("name", "params"), [
    ("batch_hard", {"margin": 0.2}),
    ("generalized_batch_hard", {"k": 2, "p": 3, "margin": 0.1}),
    ("quadruplet", {"margin1": 0.4, "margin2": 0.2}),
    ("top_rank_counter", {"k": 20.0, "phase": "vanilla"}),
])
def test_dispatch_equals_direct_call(name: str, params: dict) -> None:
    torch.testing.assert_close(metric_loss(name, EMBEDDINGS, LABELS, **params),
                               METRIC_LOSSES[name](EMBEDDINGS, LABELS, **params))


def test_triplet_dispatch_passes_the_generator() -> None:
    via_name = metric_loss("triplet", EMBEDDINGS, LABELS, margin=0.5,
                           generator=torch.Generator().manual_seed(1))
    direct = random_triplet(EMBEDDINGS, LABELS, 0.5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(via_name, direct)


def test_unknown_name_is_named() -> None:
    with pytest.raises(ValueError, match="'circle'.*batch_hard"):
        metric_loss("circle", EMBEDDINGS, LABELS)


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ValueError, match="'lam'.*'generalized_batch_hard'"):
        metric_loss("generalized_batch_hard", EMBEDDINGS, LABELS, lam=1.0)


@pytest.mark.parametrize(("name", "params", "match"), [
    ("top_rank_counter", {"phase": "foo"}, "phase"),
    ("top_rank_counter", {"k": 0}, "k must be > 0"),
    ("generalized_batch_hard", {"p": 0}, "p must be an integer >= 1"),
    ("generalized_batch_hard", {"k": -2}, "k must be an integer >= 1"),
    ("batch_hard", {"margin": "0.3"}, "margin"),
])
def test_invalid_values_are_named(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metric_loss(name, EMBEDDINGS, LABELS, **params)
