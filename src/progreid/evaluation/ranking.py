"""Ranking metrics (CMC, mAP, mINP) under the Market-1501 protocol, without argsorting any row.

Semantics (DESIGN.md): a gallery item with the query's identity *and* camera is junk and removed
from that query's ranking; identity 0 (distractors) is an ordinary negative; ties in distance are
ordered by gallery index, as a stable sort orders them; AP is the step (non-interpolated) average
precision over the valid ranking; CMC(k) = 1 if a match is within the top k; mINP averages
(number of matches) / (position of the last match); a query without a valid match is skipped and
counted.

Only the positions of a query's matches matter; :mod:`progreid.evaluation.positions` finds them
without sorting the row: a histogram of a grid between the query's first and last match counts
the items before each match, and only the few items that share a match's cell are ordered (or
only those up to the last match, when the matches come first). Queries are ranked in blocks of
about 2M distances, on CPU by one worker thread per torch thread; CUDA inputs stay on the GPU;
any real dtype (float16/32/64, integers) is ranked in its own precision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np
import torch

from progreid.evaluation.distance import GalleryDistance, Metric, as_features, as_ids, as_matrix
from progreid.evaluation.positions import Gallery, Scratch, match_positions

_CHUNK_ELEMENTS = 1 << 21  # distances ranked at a time (8 MB of float32)
_DISTANCE_ELEMENTS = 1 << 26  # default distance block of evaluate_features (256 MB of float32)


@dataclass
class RankingResult:
    """CMC curve (``cmc[k-1]`` = CMC rank k, length ``max_rank``), mAP and mINP as fractions
    in [0, 1], the number of evaluated queries and of queries skipped for lack of a match."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int
    num_skipped: int


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run torch CPU ops on one thread: the per-chunk ops here are small, and intra-op threads
    cost more than they gain (much more on a loaded machine, where workers wait for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if device.type == "cpu" else threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


@dataclass
class _Sums:
    """Sums of AP, INP and CMC hits over valid queries, and the query counts."""

    cmc_hits: torch.Tensor  # queries whose first match is at rank k + 1 (last: beyond max_rank)
    ap: float = 0.0
    inp: float = 0.0
    valid: int = 0
    skipped: int = 0

    def __iadd__(self, other: _Sums) -> _Sums:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self


class _Accumulator:
    """Metric sums over all chunks; on CPU, chunks are ranked by one worker thread per torch
    thread (each worker's torch ops on one thread: they release the GIL, and small per-chunk
    ops gain nothing from intra-op threads)."""

    def __init__(self, gallery: Gallery, max_rank: int, device: torch.device) -> None:
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1:
            raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
        self.gallery = gallery
        self.max_rank = max_rank
        self.device = device
        workers = torch.get_num_threads() if device.type == "cpu" else 1
        self.scratch = [Scratch() for _ in range(workers)]
        self.sums = self._zero()

    def _zero(self) -> _Sums:
        return _Sums(torch.zeros(self.max_rank + 1, dtype=torch.int64, device=self.device))

    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """Account for a block of queries: ``dist`` (B x G, contiguous) and their labels."""
        size = max(1, _CHUNK_ELEMENTS // max(dist.shape[1], 1))
        blocks = [(dist[rows], q_pids[rows], q_camids[rows])
                  for rows in _chunks(dist.shape[0], size)]
        workers = min(len(self.scratch), len(blocks))
        with _one_thread(dist.device):
            if workers == 1:
                self.sums += self._rank(blocks, self.scratch[0])
                return
            with ThreadPoolExecutor(workers) as pool:
                for sums in pool.map(lambda k: self._rank(blocks[k::workers], self.scratch[k]),
                                     range(workers)):
                    self.sums += sums

    def _rank(self, blocks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
              scratch: Scratch) -> _Sums:
        """Metric sums of some chunks of queries (distances and labels)."""
        sums = self._zero()
        for dist, q_pids, q_camids in blocks:
            index, is_match, is_junk = self.gallery.same_identity(q_pids, q_camids)
            count = is_match.sum(1)
            valid = count > 0
            num = int(valid.sum())
            sums.skipped += dist.shape[0] - num
            if num == 0:
                continue
            positions, slots = match_positions(dist, index, is_match, is_junk, scratch)
            ranks = torch.arange(1, slots.shape[1] + 1, device=dist.device, dtype=torch.float64)
            precision = torch.where(slots, ranks / positions, 0.0).sum(1)
            last = positions.gather(1, (count - 1).clamp(min=0)[:, None])[:, 0]
            sums.ap += float((precision[valid] / count[valid]).sum())
            sums.inp += float((count[valid] / last[valid].double()).sum())
            first = positions[valid, 0].clamp(max=self.max_rank + 1) - 1
            sums.cmc_hits += torch.bincount(first, minlength=self.max_rank + 1)
            sums.valid += num
        return sums

    def result(self) -> RankingResult:
        sums = self.sums
        if sums.valid == 0:
            raise ValueError(f"none of the {sums.skipped} queries has a valid match in the "
                             "gallery (same identity, other camera); cannot evaluate")
        cmc = sums.cmc_hits[:self.max_rank].cumsum(0).double() / sums.valid
        return RankingResult(cmc=cmc.cpu().numpy(), mAP=sums.ap / sums.valid,
                             mINP=sums.inp / sums.valid, num_valid=sums.valid,
                             num_skipped=sums.skipped)


def query_blocks(num_query: int, num_gallery: int, chunk: int | None,
                 elements: int = _DISTANCE_ELEMENTS) -> list[slice]:
    """Row slices of ``chunk`` queries each (default: about ``elements`` distances of a
    ``num_gallery``-wide matrix); a chunk that is not a positive integer is a ValueError."""
    if chunk is None:
        chunk = max(1, elements // max(num_gallery, 1))
    elif isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of queries, got {chunk!r}")
    return list(_chunks(num_query, chunk))


def protocol_labels(labels: tuple, shape: tuple[int, int],
                    device: torch.device) -> tuple[torch.Tensor, ...]:
    """``labels`` (query and gallery identities, then query and gallery cameras) checked against
    the Q x G ``shape`` and made int64 tensors on ``device``."""
    num_query, num_gallery = shape
    names = ("query_pids", "gallery_pids", "query_camids", "gallery_camids")
    return tuple(
        as_ids(values, name, num_query if name.startswith("query") else num_gallery, device)
        for name, values in zip(names, labels, strict=True))


def _rank_all(block: Callable[[slice], torch.Tensor], shape: tuple[int, int],
              device: torch.device, labels: tuple, max_rank: int, chunk: int | None
              ) -> RankingResult:
    """Metrics of the Q x G distances that ``block(rows)`` gives ``chunk`` queries at a time;
    ``labels``: query and gallery identities, then query and gallery cameras."""
    num_query, num_gallery = shape
    q_pids, g_pids, q_cams, g_cams = protocol_labels(labels, shape, device)
    acc = _Accumulator(Gallery(g_pids, g_cams), max_rank, device)
    for rows in query_blocks(num_query, num_gallery, chunk):
        acc.add(block(rows), q_pids[rows], q_cams[rows])
    return acc.result()


def evaluate(distmat, query_pids, gallery_pids, query_camids, gallery_camids,
             max_rank: int = 50, chunk: int | None = None) -> RankingResult:
    """CMC, mAP and mINP of a Q x G distance matrix (numpy array or torch tensor; a CUDA tensor
    is evaluated on its GPU). ``chunk`` queries are taken at a time (default: about 64M
    distances; a non-contiguous matrix is copied a chunk at a time) and ranked in blocks of
    about 2M distances; the result does not depend on it."""
    dist = as_matrix(distmat, "distmat", "queries x gallery")
    return _rank_all(lambda rows: dist[rows].contiguous(), dist.shape, dist.device,
                     (query_pids, gallery_pids, query_camids, gallery_camids), max_rank, chunk)


def evaluate_features(query_features, gallery_features, query_pids, gallery_pids, query_camids,
                      gallery_camids, metric: Metric = "euclidean", chunk: int | None = None,
                      max_rank: int = 50) -> RankingResult:
    """:func:`evaluate` of :func:`~progreid.evaluation.distance.pairwise_distance` without the
    Q x G matrix: distances are computed ``chunk`` queries at a time (ranked in smaller
    blocks), so memory is bounded by chunk x G (default: about 64M distances, 256 MB). Equal
    to evaluating the full matrix up to the rounding of the matrix product, which BLAS may
    block differently per chunk size (bit-identical for integer-valued features)."""
    distance = GalleryDistance(gallery_features, metric)
    query = as_features(query_features, "query_features").to(distance.device)
    return _rank_all(lambda rows: distance(query[rows]), (len(query), distance.size),
                     distance.device, (query_pids, gallery_pids, query_camids, gallery_camids),
                     max_rank, chunk)
