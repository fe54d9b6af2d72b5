"""The calibrated match threshold (progreid.evaluation.threshold) against a brute-force search
over every possible threshold, on small random distance matrices with ties and junk pairs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from progreid.evaluation import pairwise_distance
from progreid.evaluation.threshold import (
    MatchThreshold,
    match_threshold,
    match_threshold_features,
)


def brute_force(dist: np.ndarray, q_pids, g_pids, q_cams, g_cams) -> tuple[float, float]:
    """The best balanced accuracy over every threshold, and the smallest positive distance
    reaching it (same person: distance <= threshold; junk pairs left out)."""
    same = q_pids[:, None] == g_pids[None, :]
    positive = dist[same & (q_cams[:, None] != g_cams[None, :])]
    negative = dist[~same]
    candidates = np.concatenate([[-np.inf], np.unique(dist)])
    scores = [((positive <= t).mean() + (negative > t).mean()) / 2 for t in candidates]
    best = max(scores)
    reaching = [t for t in np.unique(positive)  # up to rounding: fractions are summed
                if ((positive <= t).mean() + (negative > t).mean()) / 2 >= best - 1e-12]
    return best, min(reaching)


@st.composite
def problems(draw):
    """Integer (many ties) or float distances, few identities and cameras, so that junk,
    positive and negative pairs all occur."""
    num_query, num_gallery = draw(st.integers(1, 8)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    ids = draw(st.integers(1, 4))
    labels = [rng.integers(0, ids, n) for n in (num_query, num_gallery)] + [
        rng.integers(0, 2, n) for n in (num_query, num_gallery)]
    if draw(st.booleans()):
        dist = rng.integers(0, 6, (num_query, num_gallery)).astype(np.float32)
    else:
        dist = rng.random((num_query, num_gallery)).astype(np.float32)
    return dist, labels


@settings(max_examples=200, deadline=None)
@given(problems(), st.integers(1, 5))
def test_threshold_is_the_brute_force_best(problem, chunk):
    dist, (q_pids, g_pids, q_cams, g_cams) = problem
    found = match_threshold(dist, q_pids, g_pids, q_cams, g_cams, chunk=chunk)
    same = q_pids[:, None] == g_pids[None, :]
    positive = dist[same & (q_cams[:, None] != g_cams[None, :])]
    negative = dist[~same]
    if len(positive) == 0 or len(negative) == 0:
        assert found is None
        return
    best, threshold = brute_force(dist, q_pids, g_pids, q_cams, g_cams)
    assert found.threshold == threshold
    assert found.balanced_accuracy == pytest.approx(best, abs=1e-12)
    assert found.tpr == pytest.approx((positive <= threshold).mean(), abs=1e-12)
    assert found.tnr == pytest.approx((negative > threshold).mean(), abs=1e-12)
    assert (found.positives, found.negatives) == (len(positive), len(negative))
    assert found == match_threshold(torch.from_numpy(dist), q_pids, g_pids, q_cams, g_cams)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_features_threshold_is_that_of_the_distance_matrix(metric):
    rng = np.random.default_rng(0)
    query, gallery = rng.integers(-3, 4, (9, 5)), rng.integers(-3, 4, (14, 5))  # exact distances
    labels = (rng.integers(0, 4, 9), rng.integers(0, 4, 14), rng.integers(0, 2, 9),
              rng.integers(0, 2, 14))
    found = match_threshold_features(query, gallery, *labels, metric=metric, chunk=2)
    want = match_threshold(pairwise_distance(query, gallery, metric), *labels, metric=metric)
    assert found.threshold == pytest.approx(want.threshold, rel=1e-6)  # cosine: rounding
    assert replace(found, threshold=want.threshold) == want and found.metric == metric


def test_separable_pairs_give_perfect_balanced_accuracy():
    pids = np.arange(6).repeat(2)
    dist = np.where(pids[:, None] == pids[None, :], 1.0, 3.0) + np.eye(12)
    cams = np.tile([0, 1], 6)
    found = match_threshold(dist, pids, pids, cams, cams)
    assert (found.threshold, found.balanced_accuracy, found.tpr, found.tnr) == (1.0, 1, 1, 1)
    assert (found.positives, found.negatives) == (12, 120)


def test_cosine_threshold_on_normalised_euclidean_distances():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.5]])
    cosine = float(pairwise_distance(a, b, "cosine"))
    record = MatchThreshold(cosine, "cosine", 0.9, 0.9, 0.9, 1, 1)
    unit = torch.nn.functional.normalize
    assert record.euclidean() == pytest.approx(float((unit(a) - unit(b)).norm()), rel=1e-6)
    assert MatchThreshold(2.5, "euclidean", 1, 1, 1, 1, 1).euclidean() == 2.5
    assert MatchThreshold.from_dict(record.to_dict()) == record
    with pytest.raises(ValueError, match="not a match threshold"):
        MatchThreshold.from_dict({"threshold": 1.0})


def test_bad_chunk_and_metric_are_refused():
    with pytest.raises(ValueError, match="chunk"):
        match_threshold(np.zeros((2, 2)), [0, 1], [0, 1], [0, 0], [1, 1], chunk=0)
    with pytest.raises(ValueError, match="metric"):
        match_threshold_features(np.zeros((2, 2)), np.zeros((2, 2)), [0, 1], [0, 1], [0, 0],
                                 [1, 1], metric="manhattan")
    assert not math.isnan(match_threshold(np.ones((2, 2)), [0, 1], [0, 1], [0, 0],
                                          [1, 1]).threshold)
