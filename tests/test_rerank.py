"""re_rank / re_rank_features against a dense transcription of the published algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progreid.evaluation import pairwise_distance, re_rank, re_rank_features, rerank


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors: intra-op threads only add overhead (a lot on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dense_re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3):
    """The algorithm step by step on dense N x N arrays, with a stable neighbour sort."""
    original = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)])
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(1.0 * original / np.max(original, axis=0))
    v = np.zeros_like(original)
    rank = np.argsort(original, kind="stable")
    num_query, num_all = q_g.shape[0], original.shape[0]
    half = int(np.around(k1 / 2.0))
    for i in range(num_all):
        forward = rank[i, :k1 + 1]
        recip = forward[np.where(rank[forward, :k1 + 1] == i)[0]]
        expansion = recip
        for cand in recip:
            cand_forward = rank[cand, :half + 1]
            cand_recip = cand_forward[np.where(rank[cand_forward, :half + 1] == cand)[0]]
            if len(np.intersect1d(cand_recip, recip)) > 2.0 / 3 * len(cand_recip):
                expansion = np.append(expansion, cand_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = weight / np.sum(weight)
    if k2 != 1:
        v = np.stack([np.mean(v[rank[i, :k2], :], axis=0) for i in range(num_all)])
    inverted = [np.where(v[:, j] != 0)[0] for j in range(num_all)]
    jaccard = np.zeros((num_query, num_all), dtype=np.float32)
    for i in range(num_query):
        shared = np.zeros(num_all, dtype=np.float32)
        for col in np.where(v[i] != 0)[0]:
            shared[inverted[col]] += np.minimum(v[i, col], v[inverted[col], col])
        jaccard[i] = 1 - shared / (2.0 - shared)
    final = jaccard * (1 - lambda_value) + original[:num_query] * lambda_value
    return final[:, num_query:]


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
    """Sets, query expansion and Jaccard sums split into many pieces."""
    query, gallery = clustered(20, 70, seed=4)
    expected = dense_re_ranking(*blocks(query, gallery))
    monkeypatch.setattr(rerank, "_SET_BUDGET", 500)
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 300)
    np.testing.assert_allclose(re_rank_features(query, gallery, chunk=9), expected, rtol=0,
                               atol=1e-5)


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
