"""A match threshold calibrated on a test set: the distance that best separates query-gallery
pairs of the same identity from pairs of different identities.

Pairs: every query x gallery pair except the junk ones of the Market-1501 protocol (the query's
identity seen by the query's camera). A *positive* pair shows one identity (from another
camera), a *negative* pair two identities (distractors, identity 0, are negatives).

Criterion: "same person" means ``distance <= threshold``; the threshold maximises the balanced
accuracy ``(TPR + TNR) / 2`` (equivalently Youden's J = TPR - FPR), TPR being the fraction of
positive pairs at or below it and TNR the fraction of negative pairs above it. The best
threshold is always one of the positive distances (passing a positive raises TPR, passing a
negative lowers TNR); of equally good ones the smallest is taken. Balanced accuracy weighs the
two kinds of error equally however rare positives are (Market-1501: ~50k positives among 54M
pairs).

Exact and memory-safe: the matrix is read in blocks of rows, twice: a first pass collects the
positive distances (few: about the images per identity per query), a second counts, for each
sorted positive distance, the negatives at or below it (binary search, no sort of the Q x G
distances), so memory is one block plus the positives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from progreid.evaluation.distance import (
    METRICS,
    GalleryDistance,
    Metric,
    as_features,
    as_matrix,
)
from progreid.evaluation.ranking import protocol_labels, query_blocks

_BLOCK_ELEMENTS = 1 << 22  # distances read at a time (16 MB of float32)


@dataclass(frozen=True)
class MatchThreshold:
    """A calibrated threshold: two images show one person when their ``metric`` distance is
    at most ``threshold``. ``balanced_accuracy``, ``tpr`` and ``tnr`` (fractions) are those of
    the calibration pairs, ``positives`` and ``negatives`` their counts."""

    threshold: float
    metric: str
    balanced_accuracy: float
    tpr: float
    tnr: float
    positives: int
    negatives: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> MatchThreshold:
        """The record :meth:`to_dict` wrote; a missing or unknown field is a ValueError."""
        try:
            return cls(**record)
        except TypeError as exc:
            raise ValueError(f"not a match threshold record: {record!r}") from exc

    def euclidean(self) -> float:
        """The threshold on Euclidean distances of the features as search compares them:
        itself for ``euclidean``; for ``cosine``, between L2-normalised features, where
        ``|a - b| = sqrt(2 (1 - cos))``."""
        if self.metric == "cosine":
            return math.sqrt(2.0 * max(self.threshold, 0.0))
        return self.threshold


def _calibrate(block: Callable[[slice], torch.Tensor], shape: tuple[int, int],
               device: torch.device, labels: tuple, metric: str,
               chunk: int | None) -> MatchThreshold | None:
    """The threshold of the Q x G distances that ``block(rows)`` gives (see the module);
    ``labels``: query and gallery identities, then query and gallery cameras."""
    num_query, num_gallery = shape
    q_pids, g_pids, q_cams, g_cams = protocol_labels(labels, shape, device)
    rows = query_blocks(num_query, num_gallery, chunk, _BLOCK_ELEMENTS)

    def kinds(r: slice) -> tuple[torch.Tensor, torch.Tensor]:
        same = q_pids[r, None] == g_pids[None, :]
        return same & (q_cams[r, None] != g_cams[None, :]), ~same

    positives, negatives = [], 0
    for r in rows:
        positive, negative = kinds(r)
        positives.append(block(r)[positive])
        negatives += int(negative.sum())
    values, counts = torch.unique(torch.cat(positives), return_counts=True)  # sorted
    if len(values) == 0 or negatives == 0:
        return None
    below = torch.zeros(len(values) + 1, dtype=torch.int64, device=device)
    for r in rows:
        # a negative d is at or below values[k] for every k >= the first k with values[k] >= d
        first = torch.searchsorted(values, block(r)[kinds(r)[1]])
        below += torch.bincount(first, minlength=len(values) + 1)
    num_positive = int(counts.sum())
    accepted = counts.cumsum(0)
    rejected = negatives - below[:-1].cumsum(0)
    # (TPR + TNR) x positives x negatives, in integers: equal maxima compare equal (as
    # floating-point sums of fractions they need not), so the smallest threshold wins
    score = accepted * negatives + rejected * num_positive
    best = int(torch.argmax(score))
    tpr, tnr = int(accepted[best]) / num_positive, int(rejected[best]) / negatives
    return MatchThreshold(threshold=float(values[best]), metric=metric,
                          balanced_accuracy=(tpr + tnr) / 2, tpr=tpr, tnr=tnr,
                          positives=num_positive, negatives=negatives)


def match_threshold(distmat, query_pids, gallery_pids, query_camids, gallery_camids,
                    metric: str = "euclidean", chunk: int | None = None
                    ) -> MatchThreshold | None:
    """The calibrated threshold (module docstring) of a Q x G distance matrix (numpy or torch,
    ``metric`` only names it), read ``chunk`` queries at a time (default: about 4M distances);
    None when there is no positive or no negative pair."""
    dist = as_matrix(distmat, "distmat", "queries x gallery")
    return _calibrate(lambda rows: dist[rows], tuple(dist.shape), dist.device,
                      (query_pids, gallery_pids, query_camids, gallery_camids), metric, chunk)


def match_threshold_features(query_features, gallery_features, query_pids, gallery_pids,
                             query_camids, gallery_camids, metric: Metric = "euclidean",
                             chunk: int | None = None) -> MatchThreshold | None:
    """:func:`match_threshold` of the ``metric`` distances between two feature sets (as
    :func:`~progreid.evaluation.ranking.evaluate_features` ranks them), without the Q x G
    matrix: distances are computed ``chunk`` queries at a time, twice."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    distance = GalleryDistance(gallery_features, metric)
    query = as_features(query_features, "query_features").to(distance.device)
    return _calibrate(lambda rows: distance(query[rows]), (len(query), distance.size),
                      distance.device, (query_pids, gallery_pids, query_camids, gallery_camids),
                      metric, chunk)
