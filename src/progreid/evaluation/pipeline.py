"""Evaluate a model on a dataset's query/gallery split as an :class:`EvalConfig` describes."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from progreid.config import EvalConfig
from progreid.data.loading import Workers
from progreid.data.sample import DatasetError, ReIDDataset
from progreid.evaluation.feature_cache import FeatureCache
from progreid.evaluation.features import Embedder, Features
from progreid.evaluation.protocols import cuhk03_single_shot, pool_multi_query
from progreid.evaluation.ranking import RankingResult, evaluate, evaluate_features
from progreid.evaluation.rerank import re_rank_features
from progreid.evaluation.threshold import match_threshold_features


def summarize(result: RankingResult) -> dict[str, Any]:
    """Rank-1/5/10/20, mAP and mINP as percentages, the number of valid queries, and the whole
    CMC curve (``cmc``: percent at ranks 1..max_rank, drawn by the HTML report)."""
    summary: dict[str, Any] = {f"rank{r}": 100.0 * float(result.cmc[r - 1])
                               for r in (1, 5, 10, 20) if r <= len(result.cmc)}
    summary.update(mAP=100.0 * float(result.mAP), mINP=100.0 * float(result.mINP),
                   num_valid=int(result.num_valid),
                   cmc=[round(100.0 * float(v), 4) for v in result.cmc])
    return summary


def rank_features(query: Features, gallery: Features, cfg: EvalConfig) -> RankingResult:
    """Rank the gallery for each query under ``cfg.protocol``, optionally k-reciprocal re-ranked."""
    if cfg.protocol == "single_shot":
        return cuhk03_single_shot(query.features, gallery.features, query.pids, gallery.pids,
                                  query.camids, gallery.camids, repeats=cfg.single_shot_repeats,
                                  metric=cfg.metric)
    if cfg.rerank:
        distmat = re_rank_features(query.features, gallery.features, k1=cfg.k1, k2=cfg.k2,
                                   lambda_value=cfg.lambda_value)
        return evaluate(distmat, query.pids, gallery.pids, query.camids, gallery.camids)
    return evaluate_features(query.features, gallery.features, query.pids, gallery.pids,
                             query.camids, gallery.camids, metric=cfg.metric)


def evaluate_model(embedder: Embedder, dataset: ReIDDataset, cfg: EvalConfig,
                   device: torch.device | str = "cpu", workers: Workers = 0,
                   cache: FeatureCache | None = None) -> dict[str, Any]:
    """Embed query and gallery with ``embedder`` (or read them from ``cache``), rank them as
    ``cfg`` says: metrics in percent, and ``match_threshold``: the
    :class:`~progreid.evaluation.threshold.MatchThreshold` record (a dict; None without positive
    or negative pairs) calibrated on the ``cfg.metric`` distances of these query and gallery
    features (not re-ranked, whole gallery)."""
    embed = partial(embedder.extract, device=device, batch_size=cfg.batch_size, workers=workers)
    if cache is not None:
        embed = partial(cache.extract, embed)
    if cfg.multi_query is not None and not dataset.multi_query:
        raise DatasetError(f"eval.multi_query = {cfg.multi_query!r}, but dataset "
                           f"{dataset.name!r} has no multi-query (gt_bbox) images")
    query, gallery = embed(dataset.query), embed(dataset.gallery)
    if cfg.multi_query is not None:
        extra = embed(dataset.multi_query)
        try:
            query.features = pool_multi_query(query.pids, query.camids, extra.features,
                                              extra.pids, extra.camids, cfg.multi_query)
        except ValueError as exc:
            raise DatasetError(f"{dataset.name} multi-query: {exc}") from exc
    threshold = match_threshold_features(query.features, gallery.features, query.pids,
                                         gallery.pids, query.camids, gallery.camids, cfg.metric)
    return {**summarize(rank_features(query, gallery, cfg)),
            "match_threshold": threshold.to_dict() if threshold is not None else None}
