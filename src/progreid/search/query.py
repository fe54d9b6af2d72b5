"""Rank an index's gallery for query features: exact (torch), FAISS, or re-ranked; the
results with each match's status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike

from progreid.config import EvalConfig
from progreid.search.embed import UNKNOWN
from progreid.search.index import GalleryIndex, GalleryIndexError
from progreid.search.ranking import exact_top_k, prepare, rerank_top_k

MATCH, MISMATCH, JUNK = "match", "mismatch", "junk"
#: Border colours of ranked lists (search picture and HTML report).
STATUS_COLOURS = {MATCH: "#2ca02c", MISMATCH: "#d62728", JUNK: "#9e9e9e", None: "#d0d0d0"}


def match_status(query_pid: int, query_camid: int, pid: int, camid: int) -> str | None:
    """``junk`` for the query's identity seen by the query's camera (Market-1501 protocol),
    ``match`` for its identity from another camera, ``mismatch`` for another identity, and
    None when either identity is unknown."""
    if UNKNOWN in (query_pid, pid):
        return None
    if pid != query_pid:
        return MISMATCH
    return JUNK if camid == query_camid else MATCH


@dataclass(frozen=True)
class Match:
    rank: int
    index: int
    path: str
    distance: float
    pid: int
    camid: int
    status: str | None


@dataclass(frozen=True)
class QueryResult:
    query: str
    pid: int
    camid: int
    matches: list[Match]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_gallery(index: GalleryIndex, queries: torch.Tensor, top: int, exact: bool = False,
                 rerank: EvalConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, gallery indices)``, ``Q x min(top, N)``, nearest first.

    With ``rerank`` (an ``eval`` section: ``k1``, ``k2``, ``lambda_value``) the gallery is
    re-ranked over a shortlist (:func:`rerank_top_k`); otherwise the FAISS index is used when
    the index has one (unless ``exact``), else exact search in torch.
    """
    if len(index) == 0:
        raise ValueError(f"index {index.root} is empty")
    if queries.shape[1] != index.dim:
        raise GalleryIndexError(f"the model gives {queries.shape[1]}-d embeddings but index "
                                f"{index.root} holds {index.dim}-d ones")
    queries = prepare(queries, index.metric)
    faiss_index = None if exact or rerank is not None else index.load_ann()
    if faiss_index is not None:
        from progreid.search.ann import ann_top_k

        return ann_top_k(faiss_index, queries.numpy(), min(top, len(index)),
                         index.ann["nprobe"])
    gallery = torch.from_numpy(index.searchable)
    if rerank is not None:
        distances, indices = rerank_top_k(queries, gallery, top, rerank.k1, rerank.k2,
                                          rerank.lambda_value)
    else:
        distances, indices = exact_top_k(queries, gallery, top)
    return distances.numpy(), indices.numpy()


class Item(Protocol):
    """An image with identity and camera: a dataset :class:`Sample` or an index item."""

    path: Any
    pid: int
    camid: int


def ranked_results(queries: Sequence[Item], gallery: Sequence[Item], distances: ArrayLike,
                   indices: ArrayLike) -> list[QueryResult]:
    """Query results from ``Q x k`` distances and gallery indices (negative indices, FAISS's
    padding, are skipped), each match with its status (:func:`match_status`)."""
    results = []
    for query, dists, idxs in zip(queries, np.asarray(distances), np.asarray(indices),
                                  strict=True):
        matches = []
        for dist, idx in zip(dists.tolist(), idxs.tolist(), strict=True):
            if idx < 0:
                continue
            item = gallery[idx]
            matches.append(Match(len(matches) + 1, idx, str(item.path), float(dist), item.pid,
                                 item.camid,
                                 match_status(query.pid, query.camid, item.pid, item.camid)))
        results.append(QueryResult(str(query.path), query.pid, query.camid, matches))
    return results
