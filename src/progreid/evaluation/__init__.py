"""progreid.evaluation: distances, ranking metrics, k-reciprocal re-ranking and protocols."""

from progreid.evaluation.distance import pairwise_distance
from progreid.evaluation.protocols import (
    cuhk03_single_shot,
    market_multi_query,
    pool_multi_query,
    single_shot_gallery,
)
from progreid.evaluation.ranking import RankingResult, evaluate, evaluate_features
from progreid.evaluation.rerank import re_rank, re_rank_features

__all__ = [
    "RankingResult", "cuhk03_single_shot", "evaluate", "evaluate_features", "market_multi_query",
    "pairwise_distance", "pool_multi_query", "re_rank", "re_rank_features", "single_shot_gallery",
]
