"""Loss terms as small typed objects, found by name in :data:`METRIC_LOSSES`.

A recipe names its metric loss (``loss.metric``) and its parameters (``loss.metric_params``);
:func:`metric_term` turns them into one of these dataclasses, refusing an unknown name or
parameter with the valid ones, and a bad value with the loss function's own message. Each term
is called as ``term(embeddings, labels)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from progreid.losses.classification import cross_entropy_label_smooth
from progreid.losses.quadruplet import quadruplet
from progreid.losses.top_rank_counter import top_rank_counter
from progreid.losses.triplet import (
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    random_triplet,
)


@dataclass(frozen=True)
class GeneralizedBatchHard:
    """PLA Eq. 3-4: the k-th hardest positive against the p-th hardest negative, margin m."""

    k: int = 1
    p: int = 1
    margin: float = 0.0

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return generalized_batch_hard_triplet(embeddings, labels, self.k, self.p, self.margin)


@dataclass(frozen=True)
class BatchHard:
    """Batch-hard triplet (TRC Table III "hard triplet"); ``margin=None``: soft margin."""

    margin: float | None = 0.3

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return batch_hard_triplet(embeddings, labels, self.margin)


@dataclass(frozen=True)
class Triplet:
    """Triplet loss on random triplets of the batch (TRC Table III "triplet")."""

    margin: float = 0.3

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return random_triplet(embeddings, labels, self.margin)


@dataclass(frozen=True)
class Quadruplet:
    """Quadruplet loss (TRC Table III) with its two margins."""

    margin1: float = 0.3
    margin2: float = 0.15

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return quadruplet(embeddings, labels, self.margin1, self.margin2)


@dataclass(frozen=True)
class TopRankCounter:
    """TRC Eq. 4-6 with sharpness k, over the pairs of ``phase`` (TRC Sec. IV)."""

    k: float = 10.0
    phase: Literal["vanilla", "full"] = "full"

    def __call__(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return top_rank_counter(embeddings, labels, self.k, self.phase)


@dataclass(frozen=True)
class CrossEntropy:
    """Softmax cross-entropy with label smoothing (PLA Eq. 5's L_softmax)."""

    label_smoothing: float = 0.1

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        return cross_entropy_label_smooth(logits, labels, self.label_smoothing)


MetricTerm = GeneralizedBatchHard | BatchHard | Triplet | Quadruplet | TopRankCounter

METRIC_LOSSES: dict[str, type[MetricTerm]] = {
    "batch_hard": BatchHard,
    "generalized_batch_hard": GeneralizedBatchHard,
    "triplet": Triplet,
    "quadruplet": Quadruplet,
    "top_rank_counter": TopRankCounter,
}


def metric_params(name: str) -> list[str]:
    """The parameters of the metric loss ``name``; an unknown name is a ValueError listing the
    known ones."""
    if name not in METRIC_LOSSES:
        raise ValueError(f"unknown metric loss {name!r}; expected one of {sorted(METRIC_LOSSES)}")
    return [f.name for f in dataclasses.fields(METRIC_LOSSES[name])]


def metric_term(name: str, params: dict[str, Any]) -> MetricTerm:
    """The metric loss ``name`` with ``params``, checked now: an unknown name or parameter, or a
    value the loss refuses (tried on a small fixed batch), is a ValueError naming it."""
    accepted = metric_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for metric loss {name!r}; "
                         f"it accepts {accepted}")
    term = METRIC_LOSSES[name](**params)
    term(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)),
         torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    return term
