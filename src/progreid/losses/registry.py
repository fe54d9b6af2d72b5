"""Metric losses by name, as recipes select them (``loss.metric`` + ``loss.metric_params``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor

from progreid.losses.quadruplet import quadruplet
from progreid.losses.top_rank_counter import top_rank_counter
from progreid.losses.triplet import (
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    random_triplet,
)

METRIC_LOSSES: dict[str, Callable[..., Tensor]] = {
    "batch_hard": batch_hard_triplet,
    "generalized_batch_hard": generalized_batch_hard_triplet,
    "triplet": random_triplet,
    "quadruplet": quadruplet,
    "top_rank_counter": top_rank_counter,
}


def metric_loss_params(name: str) -> tuple[str, ...]:
    """The keyword parameters the metric loss ``name`` accepts besides embeddings and labels."""
    if name not in METRIC_LOSSES:
        raise ValueError(f"unknown metric loss {name!r}; expected one of {sorted(METRIC_LOSSES)}")
    return tuple(inspect.signature(METRIC_LOSSES[name]).parameters)[2:]


def metric_loss(name: str, embeddings: Tensor, labels: Tensor, **params: Any) -> Tensor:
    """Call the metric loss ``name``; an unknown name or parameter, or a bad value, is a
    ValueError naming it."""
    accepted = metric_loss_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for metric loss {name!r}; "
                         f"it accepts {list(accepted)}")
    return METRIC_LOSSES[name](embeddings, labels, **params)
