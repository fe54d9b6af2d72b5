"""progreid.losses: pure loss functions of (embeddings or logits, labels).

PLA: :func:`generalized_batch_hard_triplet` (Eq. 3-4) and :func:`composite_loss` (Eq. 5).
TRC: :func:`top_rank_counter` (Eq. 4-6, phases of Sec. IV) and the Table III baselines
(:func:`cross_entropy_label_smooth`, :func:`random_triplet`, :func:`quadruplet`,
:func:`batch_hard_triplet`). Recipes select them as typed terms (:class:`GeneralizedBatchHard`,
:class:`TopRankCounter`, ...) by name through :func:`metric_term`.
"""

from progreid.losses.classification import cross_entropy_label_smooth
from progreid.losses.composite import composite_loss
from progreid.losses.distances import pairwise_euclidean
from progreid.losses.quadruplet import quadruplet
from progreid.losses.registry import (
    METRIC_LOSSES,
    BatchHard,
    CrossEntropy,
    GeneralizedBatchHard,
    MetricTerm,
    Quadruplet,
    TopRankCounter,
    Triplet,
    metric_params,
    metric_term,
)
from progreid.losses.top_rank_counter import PHASES, top_rank_counter, top_rank_counter_values
from progreid.losses.triplet import (
    batch_hard_triplet,
    generalized_batch_hard_triplet,
    random_triplet,
    sample_random_triplets,
)

__all__ = [
    "METRIC_LOSSES", "PHASES", "BatchHard", "CrossEntropy", "GeneralizedBatchHard", "MetricTerm",
    "Quadruplet", "TopRankCounter", "Triplet", "batch_hard_triplet", "composite_loss",
    "cross_entropy_label_smooth", "generalized_batch_hard_triplet", "metric_params", "metric_term",
    "pairwise_euclidean", "quadruplet", "random_triplet", "sample_random_triplets",
    "top_rank_counter", "top_rank_counter_values",
]
