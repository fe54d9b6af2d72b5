"""Where each query's matches land in its ranking, at a cost that does not depend on the model.

The position of a match in its query's valid ranking (junk removed, ties ordered by gallery
index) is one plus the number of gallery items before it in (distance, gallery index) order,
less the query's junk among them. Per block of rows:

1. Each row's distances, rounded to float32 (exact for float16 and float32, monotone for float64
   and integers), are sorted as plain values: numpy's SIMD sort on CPU, several times faster
   than an argsort. A binary search of each match's float32 distance in its sorted row gives
   the number of items below it and of the items that round to the same float32.
2. A match that no other item of its row shares its float32 value with is placed: the items
   below it are exactly those before it. That is most matches of a float32 or float64 matrix.
3. The other rows (a match tied or within float32 rounding of another item; every row of a
   16-bit matrix, where ties are the rule) are sorted by an int64 key, (ordered float32 bits,
   gallery index). The items that round to a match's float32 value are then a run of that
   order; each run is ordered exactly, in the input's own precision (by value, then gallery
   index), and the match's place in its run is added to the items below the run.
4. The junk before each match is counted among the query's same-identity items, ordered by
   (distance, gallery index).

A NaN in the row of a query with a match is an error; other rows are not ranked.
"""

from __future__ import annotations

import numpy as np
import torch

_INDEX_BITS = 32  # a key's low bits: the gallery index
_LOW = (1 << _INDEX_BITS) - 1
KEYS_ONLY_BYTES = 2  # distances of at most this size tie all the time: every row by keys
BLOCK_ELEMENTS = 1 << 18  # distances sorted and searched at a time on CPU: 1 MB, in L2 cache


class Gallery:
    """Gallery identities and cameras, with the gallery sorted by identity (stable, so items of
    one identity stay in gallery-index order) to look up each query's same-identity items."""

    def __init__(self, pids: torch.Tensor, camids: torch.Tensor) -> None:
        self.pids, self.camids = pids, camids
        self.by_pid = torch.sort(pids, stable=True).indices
        self.sorted_pids = pids[self.by_pid]

    def same_identity(self, q_pids: torch.Tensor, q_camids: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gallery indices (B x S, ascending, padded with 0) of each query's same-identity
        items, and the masks of its valid matches (other camera) and of its junk (same camera)."""
        start = torch.searchsorted(self.sorted_pids, q_pids)
        count = torch.searchsorted(self.sorted_pids, q_pids, right=True) - start
        width = int(count.max()) if count.numel() else 0
        offset = torch.arange(width, device=q_pids.device)
        present = offset[None, :] < count[:, None]
        where = (start[:, None] + offset[None, :]).clamp(max=max(self.pids.numel() - 1, 0))
        index = torch.where(present, self.by_pid[where], 0)
        same_camera = self.camids[index] == q_camids[:, None]
        return index, present & ~same_camera, present & same_camera


class Scratch:
    """Chunk-sized work tensors reused across chunks (fresh ones would cost page faults each)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` (the one buffer of its dtype and device)."""
        numel = shape.numel()
        buffer = self._buffers.get((dtype, device))
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[dtype, device] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel].view(shape)


class _Matches:
    """Each row's matches in (distance, gallery index) order: their gallery indices and
    distances (B x W, padded by repeating the row's last match), the mask of the real slots,
    and the number of the row's junk items before each match in that order."""

    def __init__(self, dist: torch.Tensor, index: torch.Tensor, is_match: torch.Tensor,
                 is_junk: torch.Tensor) -> None:
        present = is_match | is_junk
        # padding: the dtype's largest value sorts after, or stably with, every distance but inf
        info = torch.finfo(dist.dtype) if dist.dtype.is_floating_point else torch.iinfo(dist.dtype)
        value = torch.where(present, _canonical(dist.gather(1, index)), info.max)
        order = _stable_order(value)  # index ascends: ties by index
        order = order.gather(1, _first(present.gather(1, order)))  # padding last, even at inf
        is_match, is_junk = is_match.gather(1, order), is_junk.gather(1, order)
        count = is_match.sum(1)
        slot = torch.arange(int(count.max()), device=dist.device)[None, :]
        self.slots = slot < count[:, None]
        last = (count - 1).clamp(min=0)[:, None]  # a row without matches: padding only
        pick = _first(is_match).gather(1, torch.minimum(slot, last))
        self.index = index.gather(1, order.gather(1, pick))
        self.dist = dist.gather(1, self.index)
        self.junk_before = (is_junk.cumsum(1) - is_junk.long()).gather(1, pick)


def _first(flags: torch.Tensor) -> torch.Tensor:
    """Per row, the column order that puts the true ``flags`` first (each part in order)."""
    return _stable_order((~flags).to(torch.uint8))


def _stable_order(values: torch.Tensor) -> torch.Tensor:
    """The stable argsort of each row (numpy on CPU: torch's CPU sort is many times slower;
    numpy has no bfloat16, which float32 holds exactly)."""
    if values.device.type != "cpu":
        return torch.sort(values, dim=1, stable=True).indices
    if values.dtype == torch.bfloat16:
        values = values.float()
    return torch.from_numpy(np.argsort(values.numpy(), axis=1, kind="stable"))


def match_positions(dist: torch.Tensor, index: torch.Tensor, is_match: torch.Tensor,
                    is_junk: torch.Tensor, scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based positions (B x W int64) of each row's matches, ordered by (distance, gallery
    index), in its valid ranking, and the mask of the real slots (rows are padded to the widest).

    ``dist`` is B x G (contiguous, some row with a match); ``index``, ``is_match`` and
    ``is_junk`` are :meth:`Gallery.same_identity` of the rows' queries."""
    matches = _Matches(dist, index, is_match, is_junk)
    before = _before(dist, matches.index, matches.dist, matches.slots, scratch)
    return before - matches.junk_before + 1, matches.slots


def _before(dist: torch.Tensor, m_index: torch.Tensor, m_dist: torch.Tensor,
            slots: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """For each match slot (B x W: gallery indices ``m_index``, distances ``m_dist``, mask of
    the real ones ``slots``), the number of items of its row before it in (distance, gallery
    index) order: steps 1 to 3 of the module docstring."""
    ranked = slots[:, 0]  # rows without a match are not ranked
    if dist.element_size() <= KEYS_ONLY_BYTES:
        _check_nan(dist, ranked)
        before, tied = torch.zeros_like(m_index), ranked
    else:
        before, tied = _below(dist, m_dist, slots, scratch)
    rows = tied.nonzero()[:, 0]
    if rows.numel():
        before[rows] = _before_by_keys(dist[rows], m_index[rows], m_dist[rows], slots[rows],
                                       scratch)
    return before


def _below(dist: torch.Tensor, m_dist: torch.Tensor, slots: torch.Tensor, scratch: Scratch
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1 and 2: for each match slot, the number of items of its row whose float32
    distance is below the match's, and the rows (B bool) where a match shares its float32
    distance with another item. The distances below a row's first match or beyond its last
    are sorted as one value just below or beyond it (a run of equal values sorts fast)."""
    coarse = m_dist.float()
    ranked = slots[:, :1]
    inf = torch.tensor(float("inf"), device=dist.device)
    low = torch.where(ranked, torch.nextafter(coarse[:, :1], -inf), -inf)
    high = torch.where(ranked, torch.nextafter(coarse[:, -1:], inf), inf)
    below = torch.empty(coarse.shape, dtype=torch.int64, device=dist.device)
    after, last = torch.empty_like(coarse), torch.empty_like(coarse[:, 0])
    size = dist.shape[1]
    rows = max(1, BLOCK_ELEMENTS // size) if dist.device.type == "cpu" else dist.shape[0]
    for start in range(0, dist.shape[0], rows):  # blocks that stay in cache while ranked
        part = slice(start, start + rows)
        values = scratch.get(dist[part].shape, torch.float32, dist.device)
        torch.minimum(dist[part], high[part], out=values)  # (clamp's tensor bounds: slow)
        values = _sorted_rows(torch.maximum(values, low[part], out=values))
        below[part] = torch.searchsorted(values, coarse[part])
        after[part] = values.gather(1, (below[part] + 1).clamp(max=size - 1))
        last[part] = values[:, -1]
    _check_nan(last[:, None], ranked[:, 0])  # NaN stays NaN and sorts last
    shared = (after == coarse) & (below + 1 < size)
    return below, (shared & slots).any(1)


def _check_nan(values: torch.Tensor, ranked: torch.Tensor) -> None:
    if bool((torch.isnan(values).any(1) & ranked).any()):
        raise ValueError("the distance matrix contains NaN; cannot rank")


def _sorted_rows(values: torch.Tensor) -> torch.Tensor:
    """``values`` (a scratch tensor) sorted along its rows: in place by numpy's SIMD sort on
    CPU (torch's CPU sort is many times slower), by torch elsewhere."""
    if values.device.type == "cpu":
        values.numpy().sort(axis=1)
        return values
    return torch.sort(values, dim=1).values


def _ordered_keys(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys that order as (float32 of ``values``, ``index``): the float32's bits made
    to order as signed integers (-0.0 as 0.0), then the index in the low 32 bits. No NaN."""
    bits = (values.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes 0.0
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negatives: larger magnitude, lower key
    return (ordered.long() << _INDEX_BITS) | index


def _before_by_keys(dist: torch.Tensor, m_index: torch.Tensor, m_dist: torch.Tensor,
                    slots: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """Step 3, for rows that all have a match: for each match slot, the number of items of its
    row before it in (distance, gallery index) order."""
    rows, size = dist.shape
    column = torch.arange(size, device=dist.device)
    keys = scratch.get(dist.shape, torch.int64, dist.device)
    keys = _sorted_rows(keys.copy_(_ordered_keys(dist, column[None, :])))
    m_keys = _ordered_keys(m_dist, m_index)
    start = torch.searchsorted(keys, m_keys & ~_LOW)  # the run of the match's float32 value
    end = torch.searchsorted(keys, m_keys | _LOW, right=True)
    own = torch.searchsorted(keys, m_keys)  # the match's own key: its place among the run's
    offset = (torch.arange(rows, device=dist.device) * size)[:, None]
    start[slots] += _place_in_runs(dist.view(-1), keys.view(-1), (start + offset)[slots],
                                   (end + offset)[slots], (own - start)[slots], size)
    return start


def _place_in_runs(dist: torch.Tensor, keys: torch.Tensor, start: torch.Tensor,
                   end: torch.Tensor, own: torch.Tensor, size: int) -> torch.Tensor:
    """For each match, the number of items of its run before it in (distance, gallery index)
    order, distances compared in their own precision. A match's run is ``keys[start:end]``
    (flat positions into the rows' sorted keys, ``size`` per row), the match at ``start +
    own``; the matches of one run are adjacent. ``dist`` is the rows' flat distances."""
    runs, of_match, per_run = torch.unique_consecutive(start, return_inverse=True,
                                                       return_counts=True)
    length = end[per_run.cumsum(0) - per_run] - runs
    first = length.cumsum(0) - length  # each run's first item
    run = torch.repeat_interleave(torch.arange(runs.numel(), device=dist.device), length)
    position = runs[run] + torch.arange(run.numel(), device=dist.device) - first[run]
    element = position - position % size + (keys[position] & _LOW)  # row start + column
    value = _canonical(dist[element])
    order = _stable_order(value[None])[0]  # a run's items are in column order
    order = order[_stable_order(run[order][None])[0]]
    place = torch.empty_like(order)
    place[order] = torch.arange(order.numel(), device=dist.device) - first[run[order]]
    return place[first[of_match] + own]


def _canonical(values: torch.Tensor) -> torch.Tensor:
    """``values`` with -0.0 made 0.0 (a sort may order them apart; they tie)."""
    return values + 0.0 if values.is_floating_point() else values
