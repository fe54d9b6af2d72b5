"""re_rank / re_rank_features against a dense transcription of the published algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rerank import dense_re_ranking  # benchmarks/rerank.py (conftest puts it on the path)

from progreid.evaluation import pairwise_distance, re_rank, re_rank_features, rerank

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(num_query, num_gallery, dim=16, identities=12, seed=0, integer=False):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, identities, num_query + num_gallery)
    if integer:
        centres = rng.integers(-6, 7, (identities, dim))
        feats = (centres[ids] + rng.integers(-2, 3, (len(ids), dim))).astype(np.float32)
    else:
        centres = rng.standard_normal((identities, dim)).astype(np.float32)
        feats = centres[ids] + 0.6 * rng.standard_normal((len(ids), dim)).astype(np.float32)
    return feats[:num_query], feats[num_query:]


def blocks(query, gallery):
    return tuple(pairwise_distance(a, b).numpy()
                 for a, b in ((query, gallery), (query, query), (gallery, gallery)))


@pytest.mark.parametrize(("num_query", "num_gallery", "k1", "k2", "lam"), [
    (6, 30, 20, 6, 0.3),    # k1 + 1 = 21 < N = 36
    (25, 110, 20, 6, 0.3),
    (40, 160, 20, 6, 0.3),
    (8, 40, 5, 3, 0.5),     # k1 / 2 = 2.5 rounds half to even
    (10, 50, 7, 1, 0.0),    # k2 = 1: no query expansion; pure Jaccard
    (4, 9, 20, 6, 1.0),     # k1 + 1 and k2 larger than all neighbourhoods (N = 13)
])
def test_matches_dense_transcription(num_query, num_gallery, k1, k2, lam):
    query, gallery = clustered(num_query, num_gallery, seed=num_gallery)
    q_g, q_q, g_g = blocks(query, gallery)
    expected = dense_re_ranking(q_g, q_q, g_g, k1, k2, lam)
    result = re_rank(q_g, q_q, g_g, k1, k2, lam)
    assert isinstance(result, np.ndarray) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)
    for chunk in (None, 7):
        np.testing.assert_allclose(re_rank_features(query, gallery, k1, k2, lam, chunk=chunk),
                                   expected, rtol=0, atol=1e-5)


def test_duplicate_features_ties_broken_by_index():
    """Integer features with exact duplicates: every tie is exact, ordered by image index."""
    query, gallery = clustered(12, 60, dim=3, identities=6, seed=5, integer=True)
    gallery[10:20] = gallery[0:10]
    query[:4] = gallery[30:34]
    q_g, q_q, g_g = blocks(query, gallery)
    expected = dense_re_ranking(q_g, q_q, g_g)
    np.testing.assert_allclose(re_rank(q_g, q_q, g_g), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(re_rank_features(query, gallery, chunk=5), expected, rtol=0,
                               atol=1e-5)


def test_small_work_budgets_give_the_same_result(monkeypatch):
    """Neighbour search and Jaccard sums split into many pieces."""
    query, gallery = clustered(20, 70, seed=4)
    expected = dense_re_ranking(*blocks(query, gallery))
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 300)
    np.testing.assert_allclose(re_rank_features(query, gallery, chunk=9), expected, rtol=0,
                               atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(num_query=st.integers(1, 8), num_gallery=st.integers(2, 40), dim=st.integers(1, 3),
       k1=st.integers(1, 25), k2=st.integers(1, 8), lam=st.floats(0.0, 1.0),
       chunk=st.none() | st.integers(1, 12), seed=st.integers(0, 2**16))
def test_random_ties_match_dense_transcription(num_query, num_gallery, dim, k1, k2, lam, chunk,
                                               seed):
    """Small integer features: many exact ties and duplicate images, any k1, k2, chunk."""
    rng = np.random.default_rng(seed)
    query, gallery = (rng.integers(-2, 3, (n, dim)).astype(np.float32)
                      for n in (num_query, num_gallery))
    # the normalisation by the column maximum needs two distinct images at least
    assume(len(np.unique(np.concatenate([query, gallery]), axis=0)) > 1)
    q_g, q_q, g_g = blocks(query, gallery)
    expected = dense_re_ranking(q_g, q_q, g_g, k1, k2, lam)
    np.testing.assert_allclose(re_rank(q_g, q_q, g_g, k1, k2, lam), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(re_rank_features(query, gallery, k1, k2, lam, chunk=chunk),
                               expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 1, 37, 400])
def test_neighbour_lists_equal_a_full_stable_sort(monkeypatch, chunk):
    """The candidate lists of the upper-triangle search (group minima, bounds, batched
    merges) against a stable sort of every full row of M, on integer features (exact
    products, many ties) large enough for groups of 32 entries."""
    rng = np.random.default_rng(3)
    features = rng.integers(-3, 4, (1500, 4)).astype(np.float32)
    monkeypatch.setattr(rerank, "_CHUNK_ELEMENTS", 200_000)  # several blocks by default
    source = rerank._FeatureSource(features[:300], features[300:])
    out = torch.empty(300, 1200)
    k = 6
    neighbours, near_dist, col_max = rerank._neighbour_search(source, k, chunk, out)
    dist = source.rows_of(torch.arange(1500)).clamp_(min=0.0)
    assert torch.equal(col_max, dist.amax(0))
    m = dist / col_max[:, None]
    order = torch.sort(m, dim=1, stable=True).indices[:, :k]
    assert torch.equal(neighbours, order)
    assert torch.equal(near_dist, m.gather(1, order))
    assert torch.equal(out, m[:300, 300:])


@pytest.mark.parametrize("size", [0, 5, 8, 64, 1001])
def test_flat_nonzero(size):
    mask = torch.rand(size) < 0.1
    assert torch.equal(rerank._flat_nonzero(mask), torch.nonzero(mask).view(-1))


def test_torch_and_float64_inputs():
    query, gallery = clustered(10, 40, seed=9)
    q_g, q_q, g_g = (b.astype(np.float64) for b in blocks(query, gallery))
    expected = dense_re_ranking(q_g, q_q, g_g, 10, 4)
    out = re_rank(*(torch.from_numpy(b) for b in (q_g, q_q, g_g)), k1=10, k2=4)
    assert isinstance(out, torch.Tensor) and out.shape == (10, 40)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-5)
    out = re_rank_features(torch.from_numpy(query), torch.from_numpy(gallery), 10, 4)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), dense_re_ranking(*blocks(query, gallery), 10, 4),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k1": 0}, "k1"), ({"k2": 2.5}, "k2"), ({"lambda_value": 1.5}, "lambda_value"),
])
def test_bad_parameters(kwargs, message):
    query, gallery = clustered(3, 6)
    with pytest.raises(ValueError, match=message):
        re_rank_features(query, gallery, **kwargs)


def test_bad_distance_blocks():
    q_g, q_q, g_g = blocks(*clustered(3, 6))
    with pytest.raises(ValueError, match="g_g has shape"):
        re_rank(q_g, q_q, g_g[:5])
    q_g[0, 0] = np.nan
    with pytest.raises(ValueError, match="q_g contains NaN"):
        re_rank(q_g, q_q, g_g)
    with pytest.raises(ValueError, match="all distances from image"):
        re_rank_features(np.zeros((2, 3)), np.zeros((4, 3)))
