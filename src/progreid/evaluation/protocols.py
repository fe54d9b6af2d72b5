"""Evaluation protocols on features and identity / camera arrays (no dataset objects).

Market-1501 single query and CUHK03 767/700 are :func:`~progreid.evaluation.ranking.
evaluate_features` itself. This module adds the Market-1501 multi-query protocol (query features
pooled over the ``gt_bbox`` images of the query's identity and camera) and the classic CUHK03
single-shot protocol (one random gallery image per identity, repeated and averaged). All return
a :class:`~progreid.evaluation.ranking.RankingResult` (CMC, from which rank-1/5/10/20, mAP,
mINP).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from progreid.evaluation.distance import Metric, as_features, as_ids, as_tensor
from progreid.evaluation.ranking import RankingResult, evaluate_features

Pooling = Literal["avg", "max"]


def pool_multi_query(query_pids, query_camids, mq_features, mq_pids, mq_camids,
                     pooling: Pooling = "avg") -> torch.Tensor:
    """Market-1501 multi-query features: for each query, the average (``"avg"``) or
    element-wise maximum (``"max"``) of the features of the multi-query images that share its
    identity and camera. Q x D float32 on the multi-query features' device."""
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
    feats = as_features(mq_features, "mq_features")
    device = feats.device
    mq_keys = torch.stack([as_ids(mq_pids, "mq_pids", len(feats), device),
                           as_ids(mq_camids, "mq_camids", len(feats), device)], 1)
    q_pids = as_tensor(query_pids, "query_pids", device)
    q_keys = torch.stack([as_ids(query_pids, "query_pids", len(q_pids), device),
                          as_ids(query_camids, "query_camids", len(q_pids), device)], 1)
    groups, inverse = torch.unique(torch.cat([mq_keys, q_keys]), dim=0, return_inverse=True)
    mq_group, q_group = inverse[:len(feats)], inverse[len(feats):]
    size = torch.bincount(mq_group, minlength=len(groups))
    empty = size[q_group] == 0
    if bool(empty.any()):
        index = int(torch.nonzero(empty)[0])
        pid, cam = (int(v) for v in q_keys[index])
        raise ValueError(f"query {index} (identity {pid}, camera {cam}) has no multi-query "
                         "image with its identity and camera")
    pooled = torch.zeros(len(groups), feats.shape[1], dtype=feats.dtype, device=device)
    if pooling == "avg":
        pooled.index_add_(0, mq_group, feats).div_(size.clamp(min=1)[:, None])
    else:
        index = mq_group[:, None].expand_as(feats)
        pooled.scatter_reduce_(0, index, feats, reduce="amax", include_self=False)
    return pooled[q_group]


def market_multi_query(query_pids, query_camids, mq_features, mq_pids, mq_camids,
                       gallery_features, gallery_pids, gallery_camids, pooling: Pooling = "avg",
                       metric: Metric = "euclidean", max_rank: int = 50) -> RankingResult:
    """Market-1501 multi-query evaluation: :func:`pool_multi_query` features ranked against
    the gallery with the single-query rules (same identity and camera is junk)."""
    query = pool_multi_query(query_pids, query_camids, mq_features, mq_pids, mq_camids, pooling)
    return evaluate_features(query, gallery_features, query_pids, gallery_pids, query_camids,
                             gallery_camids, metric=metric, max_rank=max_rank)


def single_shot_gallery(gallery_pids, rng: np.random.Generator) -> np.ndarray:
    """Indices of one uniformly drawn gallery image per identity, in identity order."""
    pids = np.asarray(gallery_pids)
    shuffled = rng.permutation(len(pids))
    order = shuffled[np.argsort(pids[shuffled], kind="stable")]
    return order[np.unique(pids[order], return_index=True)[1]]  # each identity's first


def cuhk03_single_shot(query_features, gallery_features, query_pids, gallery_pids,
                       query_camids, gallery_camids, repeats: int = 10, seed: int = 0,
                       metric: Metric = "euclidean", max_rank: int = 50) -> RankingResult:
    """Classic CUHK03 single-shot evaluation: ``repeats`` times, a gallery of one random image
    per identity (numpy generator seeded with ``seed``) is ranked for every query; CMC, mAP
    and mINP are averaged over the repeats, ``num_valid`` / ``num_skipped`` are totals."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    gallery = as_features(gallery_features, "gallery_features")
    g_pids = as_ids(gallery_pids, "gallery_pids", len(gallery), torch.device("cpu")).numpy()
    g_cams = as_ids(gallery_camids, "gallery_camids", len(gallery), torch.device("cpu")).numpy()
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(repeats):
        chosen = single_shot_gallery(g_pids, rng)
        results.append(evaluate_features(
            query_features, gallery[torch.as_tensor(chosen, device=gallery.device)],
            query_pids, g_pids[chosen], query_camids, g_cams[chosen], metric=metric,
            max_rank=max_rank))
    return RankingResult(cmc=np.mean([r.cmc for r in results], axis=0),
                         mAP=float(np.mean([r.mAP for r in results])),
                         mINP=float(np.mean([r.mINP for r in results])),
                         num_valid=sum(r.num_valid for r in results),
                         num_skipped=sum(r.num_skipped for r in results))
