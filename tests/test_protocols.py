"""Market-1501 multi-query pooling and the classic CUHK03 single-shot protocol."""

from __future__ import annotations

import numpy as np
import pytest

from progreid.evaluation import (
    cuhk03_single_shot,
    evaluate,
    market_multi_query,
    pairwise_distance,
    pool_multi_query,
    single_shot_gallery,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def market_like(seed=0, identities=8, cameras=3, mq_per=3, gallery=60, dim=6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities + 1, dim))
    q_pids = np.repeat(np.arange(1, identities + 1), 2)
    q_cams = rng.integers(0, cameras, len(q_pids))
    mq_pids, mq_cams = np.repeat(q_pids, mq_per), np.repeat(q_cams, mq_per)
    g_pids, g_cams = rng.integers(0, identities + 1, gallery), rng.integers(0, cameras, gallery)

    def feats(pids):
        return (centres[pids] + 0.8 * rng.standard_normal((len(pids), dim))).astype(np.float32)

    return (q_pids, q_cams, feats(mq_pids), mq_pids, mq_cams, feats(g_pids), g_pids, g_cams)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooling_over_same_identity_and_camera(pooling):
    q_pids, q_cams, mq_feats, mq_pids, mq_cams, *_ = market_like()
    pooled = pool_multi_query(q_pids, q_cams, mq_feats, mq_pids, mq_cams, pooling).numpy()
    reduce = np.mean if pooling == "avg" else np.max
    for q, (pid, cam) in enumerate(zip(q_pids, q_cams, strict=True)):
        group = mq_feats[(mq_pids == pid) & (mq_cams == cam)]
        np.testing.assert_allclose(pooled[q], reduce(group, axis=0), rtol=1e-6, atol=1e-6)


def test_multi_query_evaluation_ranks_pooled_features():
    q_pids, q_cams, mq_feats, mq_pids, mq_cams, g_feats, g_pids, g_cams = market_like(seed=1)
    pooled = pool_multi_query(q_pids, q_cams, mq_feats, mq_pids, mq_cams, "max")
    expected = evaluate(pairwise_distance(pooled, g_feats), q_pids, g_pids, q_cams, g_cams)
    result = market_multi_query(q_pids, q_cams, mq_feats, mq_pids, mq_cams, g_feats, g_pids,
                                g_cams, pooling="max")
    np.testing.assert_array_equal(result.cmc, expected.cmc)
    assert (result.mAP, result.mINP, result.num_valid) == (expected.mAP, expected.mINP,
                                                           expected.num_valid)


def test_multi_query_errors():
    q_pids, q_cams, mq_feats, mq_pids, mq_cams, *_ = market_like()
    with pytest.raises(ValueError, match="pooling"):
        pool_multi_query(q_pids, q_cams, mq_feats, mq_pids, mq_cams, "median")
    with pytest.raises(ValueError, match=r"query 0 \(identity 1, camera"):
        pool_multi_query(q_pids, q_cams, mq_feats[3:], mq_pids[3:], mq_cams[3:])
    with pytest.raises(ValueError, match="mq_camids has shape"):
        pool_multi_query(q_pids, q_cams, mq_feats, mq_pids, mq_cams[:-1])


def test_single_shot_gallery_draws_one_image_per_identity():
    pids = np.array([5, 3, 5, 5, 9, 3, 0])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        chosen = single_shot_gallery(pids, rng)
        assert sorted(pids[chosen]) == [0, 3, 5, 9]
        seen.update(chosen.tolist())
    assert seen == set(range(len(pids)))  # every image gets drawn
    a, b = (single_shot_gallery(pids, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_cuhk03_single_shot_averages_the_seeded_repeats():
    rng = np.random.default_rng(2)
    identities, dim = 15, 8
    centres = rng.standard_normal((identities, dim))
    q_pids = np.repeat(np.arange(identities), 2)
    g_pids = np.repeat(np.arange(identities), 3)
    q_feats = (centres[q_pids] + rng.standard_normal((len(q_pids), dim))).astype(np.float32)
    g_feats = (centres[g_pids] + rng.standard_normal((len(g_pids), dim))).astype(np.float32)
    q_cams, g_cams = np.zeros(len(q_pids), int), np.ones(len(g_pids), int)
    result = cuhk03_single_shot(q_feats, g_feats, q_pids, g_pids, q_cams, g_cams, repeats=4,
                                seed=11, max_rank=20)
    draws = np.random.default_rng(11)
    cmc, ap = [], []
    for _ in range(4):
        chosen = single_shot_gallery(g_pids, draws)
        dist = pairwise_distance(q_feats, g_feats[chosen]).numpy()
        rank = np.array([1 + np.sum(row < row[g_pids[chosen] == pid][0])
                         for row, pid in zip(dist, q_pids, strict=True)])  # one match each
        cmc.append([np.mean(rank <= k) for k in range(1, 21)])
        ap.append(np.mean(1.0 / rank))
    np.testing.assert_allclose(result.cmc, np.mean(cmc, axis=0), atol=1e-12)
    assert result.mAP == pytest.approx(np.mean(ap), abs=1e-12)
    assert result.mINP == pytest.approx(result.mAP, abs=1e-12)  # single match: INP = AP
    assert (result.num_valid, result.num_skipped) == (4 * len(q_pids), 0)
    with pytest.raises(ValueError, match="repeats"):
        cuhk03_single_shot(q_feats, g_feats, q_pids, g_pids, q_cams, g_cams, repeats=0)
