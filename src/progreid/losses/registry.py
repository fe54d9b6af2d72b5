"""Loss terms as small typed objects, found by name in :data:`METRIC_LOSSES`.

A recipe names its metric loss (``loss.metric``) and its parameters (``loss.metric_params``);
:func:`metric_term` turns them into one of these dataclasses, refusing an unknown name or
parameter with the valid ones, and a bad value with the loss function's own message. Each term
is called as ``term(embeddings, labels)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from progreid.losses.classification import cross_entropy_label_smooth
from progreid.losses.distances import Features
from progreid.losses.quadruplet import quadruplet
from progreid.losses.top_rank_counter import top_rank_counter
from progreid.losses.triplet import (
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    random_triplet,
)


class _Term:
    """A loss term: ``term(x, labels)`` is ``loss(x, labels, *fields)``, its fields in order."""

    loss: ClassVar[Callable[..., Tensor]]

    def __call__(self, x: Tensor, labels: Tensor) -> Tensor:
        return self.loss(x, labels, *(getattr(self, f.name) for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class GeneralizedBatchHard(_Term):
    """PLA Eq. 3-4: the k-th hardest positive against the p-th hardest negative, margin m."""

    loss = staticmethod(generalized_batch_hard_triplet)
    k: int = 1
    p: int = 1
    margin: float = 0.0


@dataclass(frozen=True)
class BatchHard(_Term):
    """Batch-hard triplet (TRC Table III "hard triplet"); ``margin=None``: soft margin; on
    ``raw`` features (Hermans et al.'s) or ``normalized`` ones."""

    loss = staticmethod(batch_hard_triplet)
    margin: float | None = 0.3
    features: Features = "raw"


@dataclass(frozen=True)
class Triplet(_Term):
    """Triplet loss on random triplets of the batch (TRC Table III "triplet"), on ``raw`` or
    ``normalized`` features."""

    loss = staticmethod(random_triplet)
    margin: float = 0.3
    features: Features = "raw"


@dataclass(frozen=True)
class Quadruplet(_Term):
    """Quadruplet loss (TRC Table III) with its two margins, on ``raw`` or ``normalized``
    features."""

    loss = staticmethod(quadruplet)
    margin1: float = 0.3
    margin2: float = 0.15
    features: Features = "raw"


@dataclass(frozen=True)
class TopRankCounter(_Term):
    """TRC Eq. 4-6 with sharpness k, over the pairs of ``phase`` (TRC Sec. IV), on ``raw``
    features (the paper's) or ``normalized`` ones, times ``scale``."""

    loss = staticmethod(top_rank_counter)
    k: float = 10.0
    phase: Literal["vanilla", "full"] = "full"
    features: Features = "raw"
    scale: float = 1.0


@dataclass(frozen=True)
class CrossEntropy(_Term):
    """Softmax cross-entropy with label smoothing (PLA Eq. 5's L_softmax)."""

    loss = staticmethod(cross_entropy_label_smooth)
    label_smoothing: float = 0.1


MetricTerm = GeneralizedBatchHard | BatchHard | Triplet | Quadruplet | TopRankCounter

METRIC_LOSSES: dict[str, type[MetricTerm]] = {
    "batch_hard": BatchHard,
    "generalized_batch_hard": GeneralizedBatchHard,
    "triplet": Triplet,
    "quadruplet": Quadruplet,
    "top_rank_counter": TopRankCounter,
}


def metric_params(name: str) -> list[str]:
    """The parameters of the metric loss ``name``; ValueError listing the known names if unknown."""
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
