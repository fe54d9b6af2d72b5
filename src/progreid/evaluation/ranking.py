"""Ranking metrics (CMC, mAP, mINP) under the Market-1501 protocol, without sorting any row.

Semantics (DESIGN.md): a gallery item with the query's identity *and* camera is junk and removed
from that query's ranking; identity 0 (distractors) is an ordinary negative; ties in distance are
ordered by gallery index, as a stable sort orders them; AP is the step (non-interpolated) average
precision over the valid ranking; CMC(k) = 1 if a match is within the top k; mINP averages
(number of matches) / (position of the last match); a query without a valid match is skipped and
counted.

Only the positions of a query's matches matter. A query's same-identity gallery items are found
through the gallery sorted by identity (no pass over the row). One comparison pass over the row
keeps the valid non-matches at most as far as the last match; for each of those, a binary search
among the query's sorted matches counts the matches that precede it (ties by gallery index), and
a histogram of these counts with a prefix sum gives every match's position. Work per query: O(G)
plus O(K log K) for its K kept non-matches. Queries are processed in chunks; CUDA inputs stay on
the GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from progreid.evaluation.distance import GalleryDistance, Metric, as_features, as_tensor

_CHUNK_ELEMENTS = 1 << 22  # distances ranked at a time (16 MB of float32)
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


class _Gallery:
    """Gallery identities and cameras, with the gallery sorted by identity (stable, so items of
    one identity stay in gallery-index order) to look up each query's same-identity items."""

    def __init__(self, pids: torch.Tensor, camids: torch.Tensor) -> None:
        self.pids, self.camids = pids, camids
        self.by_pid = torch.sort(pids, stable=True).indices
        self.sorted_pids = pids[self.by_pid]

    @property
    def size(self) -> int:
        return self.pids.numel()

    def matches(self, q_pids: torch.Tensor, q_camids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gallery indices (B x S, ascending, padded) of each query's same-identity items and
        the mask of those that are valid matches (other camera)."""
        start = torch.searchsorted(self.sorted_pids, q_pids)
        count = torch.searchsorted(self.sorted_pids, q_pids, right=True) - start
        width = int(count.max()) if count.numel() else 0
        offset = torch.arange(width, device=q_pids.device)
        present = offset[None, :] < count[:, None]
        where = (start[:, None] + offset[None, :]).clamp(max=max(self.size - 1, 0))
        index = torch.where(present, self.by_pid[where], 0)
        return index, present & (self.camids[index] != q_camids[:, None])


def _not_farther(dist: torch.Tensor, bound: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, value) of the entries of ``dist`` (B x G, contiguous) not farther than
    ``bound[row]``, NaN included (``not d > bound``) so that the caller sees every NaN.
    On CPU the pass runs in numpy, whose comparison kernel is ~3x faster than torch's here."""
    if dist.device.type != "cpu":
        flat = (~(dist > bound[:, None])).view(-1).nonzero().squeeze(1)
    else:
        mask = np.greater(dist.numpy(), bound.numpy()[:, None])
        flat = torch.from_numpy(np.flatnonzero(np.logical_not(mask, out=mask)))
    return flat // dist.shape[1], flat % dist.shape[1], dist.view(-1)[flat]


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run torch CPU ops on one thread: the per-chunk ops here are small, and intra-op threads
    cost more than they gain (much more on a loaded machine, where workers wait for cores)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _chunks(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _sorted_matches(dist: torch.Tensor, index: torch.Tensor, is_match: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's matches ordered by (distance, gallery index), padded to the widest row with
    distance +inf and index G: (distances, gallery indices, slot mask)."""
    count = is_match.sum(1)
    width = int(count.max())
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    order = torch.sort(torch.where(is_match, dist.gather(1, index), inf), dim=1,
                       stable=True).indices  # index ascends within a row: ties by index
    order = order.gather(1, torch.sort((~is_match).gather(1, order).to(torch.uint8), dim=1,
                                       stable=True).indices)[:, :width]
    slots = torch.arange(width, device=dist.device)[None, :] < count[:, None]
    m_index = torch.where(slots, index.gather(1, order), index.new_full((), dist.shape[1]))
    m_dist = torch.where(slots, dist.gather(1, m_index.clamp(max=dist.shape[1] - 1)), inf)
    return m_dist, m_index, slots


def _value_keys(values: torch.Tensor) -> torch.Tensor:
    """int64 keys in [0, 2^32) ordered exactly like ``values`` (equal values, equal keys):
    the IEEE bits of float32 (monotone once the sign is folded in), else dense ranks."""
    if values.dtype != torch.float32:
        return torch.unique(values, return_inverse=True)[1]
    bits = (values + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long() + 2**31


def _match_positions(dist: torch.Tensor, m_dist: torch.Tensor, m_index: torch.Tensor,
                     slots: torch.Tensor, q_pids: torch.Tensor, gallery: _Gallery
                     ) -> torch.Tensor:
    """1-based positions (B x W) of each row's sorted matches in its valid ranking.

    Matches and kept non-matches get exact int64 keys ordered like (row, distance, gallery
    index), so one binary search of each non-match among the sorted match keys counts the
    matches ranked before it.
    """
    rows, width = m_dist.shape
    num_gallery = dist.shape[1]
    last = m_dist.masked_fill(~slots, float("-inf")).amax(1)
    row, col, value = _not_farther(dist, last)
    if bool(torch.isnan(value).any()):
        raise ValueError("the distance matrix contains NaN; cannot rank")
    keep = gallery.pids[col] != q_pids[row]  # drops the matches and the junk
    row, col, value = row[keep], col[keep], value[keep]
    count = slots.sum(1)
    m_row = torch.repeat_interleave(torch.arange(rows, device=dist.device), count)
    keys = _value_keys(torch.cat([m_dist[slots], value]))
    m_key = ((m_row << 32) + keys[:m_row.numel()]) * num_gallery + m_index[slots]
    key = ((row << 32) + keys[m_row.numel():]) * num_gallery + col
    before = torch.searchsorted(m_key, key) - (count.cumsum(0) - count)[row]
    hist = torch.bincount(row * (width + 1) + before, minlength=rows * (width + 1))
    closer = hist.view(rows, width + 1)[:, :width].cumsum(1)
    return torch.arange(1, width + 1, device=dist.device)[None, :] + closer


class _Accumulator:
    """Sums of AP, INP and CMC hits over the valid queries of all chunks."""

    def __init__(self, gallery: _Gallery, max_rank: int, device: torch.device) -> None:
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1:
            raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
        self.gallery = gallery
        self.max_rank = max_rank
        self.cmc_hits = torch.zeros(max_rank + 1, dtype=torch.int64, device=device)
        self.ap = torch.zeros((), dtype=torch.float64, device=device)
        self.inp = torch.zeros((), dtype=torch.float64, device=device)
        self.valid = 0
        self.skipped = 0

    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """Account for a block of queries: ``dist`` (B x G, contiguous) and their labels."""
        with _one_thread(dist.device):
            for rows in _chunks(dist.shape[0], max(1, _CHUNK_ELEMENTS // max(dist.shape[1], 1))):
                self._add(dist[rows], q_pids[rows], q_camids[rows])

    def _add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        index, is_match = self.gallery.matches(q_pids, q_camids)
        has_match = is_match.any(1)
        num = int(has_match.sum())
        self.skipped += dist.shape[0] - num
        if num == 0:
            return
        if num < dist.shape[0]:
            dist, index, is_match, q_pids = (dist[has_match], index[has_match],
                                             is_match[has_match], q_pids[has_match])
        m_dist, m_index, slots = _sorted_matches(dist, index, is_match)
        positions = _match_positions(dist, m_dist, m_index, slots, q_pids, self.gallery)
        count = slots.sum(1)
        ranks = torch.arange(1, slots.shape[1] + 1, device=dist.device, dtype=torch.float64)
        precision = torch.where(slots, ranks / positions, 0.0)
        self.ap += (precision.sum(1) / count).sum()
        self.inp += (count / positions.gather(1, (count - 1)[:, None])[:, 0].double()).sum()
        self.cmc_hits += torch.bincount(positions[:, 0].clamp(max=self.max_rank + 1) - 1,
                                        minlength=self.max_rank + 1)
        self.valid += num

    def result(self) -> RankingResult:
        if self.valid == 0:
            raise ValueError(f"none of the {self.skipped} queries has a valid match in the "
                             "gallery (same identity, other camera); cannot evaluate")
        cmc = self.cmc_hits[:self.max_rank].cumsum(0).double() / self.valid
        return RankingResult(cmc=cmc.cpu().numpy(), mAP=float(self.ap) / self.valid,
                             mINP=float(self.inp) / self.valid, num_valid=self.valid,
                             num_skipped=self.skipped)


def _labels(num_query: int, num_gallery: int, device: torch.device, **arrays
            ) -> list[torch.Tensor]:
    """Identity / camera arrays as int64 tensors on ``device``, checked against the sizes."""
    out = []
    for name, values in arrays.items():
        tensor = as_tensor(values, name, device)
        expected = num_query if name.startswith("query") else num_gallery
        if tensor.shape != (expected,):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected ({expected},)")
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")
        out.append(tensor.long())
    return out


def _auto_chunk(chunk: int | None, num_gallery: int, elements: int) -> int:
    if chunk is None:
        return max(1, elements // max(num_gallery, 1))
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of queries, got {chunk!r}")
    return chunk


def evaluate(distmat, query_pids, gallery_pids, query_camids, gallery_camids,
             max_rank: int = 50, chunk: int | None = None) -> RankingResult:
    """CMC, mAP and mINP of a Q x G distance matrix (numpy array or torch tensor; a CUDA tensor
    is evaluated on its GPU). ``chunk`` queries are processed at a time (default: about 4M
    distances); the result does not depend on it."""
    dist = as_tensor(distmat, "distmat")
    if dist.dim() != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape "
                         f"{tuple(dist.shape)}")
    if dist.dtype == torch.bool or dist.is_complex():
        raise TypeError(f"distmat must hold real numbers, got dtype {dist.dtype}")
    if not dist.is_floating_point():
        dist = dist.double()
    elif dist.dtype not in (torch.float32, torch.float64):
        dist = dist.float()  # exact for float16 / bfloat16
    q_pids, g_pids, q_cams, g_cams = _labels(
        dist.shape[0], dist.shape[1], dist.device, query_pids=query_pids,
        gallery_pids=gallery_pids, query_camids=query_camids, gallery_camids=gallery_camids)
    acc = _Accumulator(_Gallery(g_pids, g_cams), max_rank, dist.device)
    for rows in _chunks(dist.shape[0], _auto_chunk(chunk, dist.shape[1], _CHUNK_ELEMENTS)):
        acc.add(dist[rows].contiguous(), q_pids[rows], q_cams[rows])
    return acc.result()


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
    q_pids, g_pids, q_cams, g_cams = _labels(
        query.shape[0], distance.size, distance.device, query_pids=query_pids,
        gallery_pids=gallery_pids, query_camids=query_camids, gallery_camids=gallery_camids)
    acc = _Accumulator(_Gallery(g_pids, g_cams), max_rank, distance.device)
    for rows in _chunks(query.shape[0], _auto_chunk(chunk, distance.size, _DISTANCE_ELEMENTS)):
        acc.add(distance(query[rows]), q_pids[rows], q_cams[rows])
    return acc.result()
