"""Where each query's matches land in its ranking, without sorting any row.

The position of a match in a query's valid ranking (junk removed, ties ordered by gallery index)
is one plus the number of valid gallery items before it in (distance, gallery index) order. Only
the query's matches are sorted; the gallery is counted against them in passes whose cost does
not depend on how good the model is:

1. Each row's distances are scaled so that its first match is at 0 and its last at K (K = G / 8)
   and binned by their integer part. In [-1, K + 1] the bin never decreases with the distance;
   below and above, the distances fill a few bins under the first match's and over the last
   match's. So an item in a lower bin than a match is before it, one in a higher bin after it.
2. A histogram of the bins, summed up to each match's bin, counts the items before that bin.
3. The items that share a bin with a match (near misses, exact ties) are ranked exactly among
   the matches of their bin by a binary search on (distance, gallery index), in the input's own
   precision; the matches of a bin are already in that order. The query's junk is taken off.

Per query: O(G) for the bins, the histogram and the flags of step 3, plus O(F log c) for the F
items that share a bin with one of its m matches, c matches at most in one bin (F is about 8 m
for evenly spread distances). When a chunk's matches come first (at most 1 / NEAR_SHARE of its
distances reach as far as their row's last match), one comparison pass keeps those distances
and each is ranked among its row's matches by the same binary search instead: cheaper, and
exact too. All torch, on the distances' device; numpy only lists the flagged items on CPU,
where its kernel is several times faster than torch's.
"""

from __future__ import annotations

import numpy as np
import torch

ITEMS_PER_BIN = 8  # K = G / 8 bins between a row's first and last match
SPREAD = 16  # bins that the distances below a row's first match (and above its last) share
NEAR_SHARE = 32  # only the distances up to their row's last match are ranked when at most 1/32


class Gallery:
    """Gallery identities and cameras, with the gallery sorted by identity (stable, so items of
    one identity stay in gallery-index order) to look up each query's same-identity items."""

    def __init__(self, pids: torch.Tensor, camids: torch.Tensor) -> None:
        self.pids, self.camids = pids, camids
        self.by_pid = torch.sort(pids, stable=True).indices
        self.sorted_pids = pids[self.by_pid]

    @property
    def size(self) -> int:
        return self.pids.numel()

    def same_identity(self, q_pids: torch.Tensor, q_camids: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gallery indices (B x S, ascending, padded with 0) of each query's same-identity
        items, and the masks of its valid matches (other camera) and of its junk (same camera)."""
        start = torch.searchsorted(self.sorted_pids, q_pids)
        count = torch.searchsorted(self.sorted_pids, q_pids, right=True) - start
        width = int(count.max()) if count.numel() else 0
        offset = torch.arange(width, device=q_pids.device)
        present = offset[None, :] < count[:, None]
        where = (start[:, None] + offset[None, :]).clamp(max=max(self.size - 1, 0))
        index = torch.where(present, self.by_pid[where], 0)
        same_camera = self.camids[index] == q_camids[:, None]
        return index, present & ~same_camera, present & same_camera


class Scratch:
    """Chunk-sized work tensors, reused from chunk to chunk (fresh ones would cost page faults
    on every chunk), and the bin bounds of a gallery size."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._bounds: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` (the one buffer of its dtype and device)."""
        numel = shape.numel()
        buffer = self._buffers.get((dtype, device))
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[dtype, device] = torch.empty(numel, dtype=dtype,
                                                                device=device)
        return buffer[:numel].view(shape)

    def bounds(self, num_gallery: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column (1 x G float32) lower and upper bounds of the scaled distances: -1 and
        K + 1, less or more (column mod SPREAD), so that the many distances beyond a row's
        first or last match fill SPREAD bins instead of one (a histogram that adds into one
        counter in a row waits for each addition to finish)."""
        key = (num_gallery, device)
        if key not in self._bounds:
            spread = (torch.arange(num_gallery, device=device) % SPREAD).float()[None, :]
            self._bounds[key] = (-1.0 - spread, _num_bins(num_gallery) + 1.0 + spread)
        return self._bounds[key]


def _num_bins(num_gallery: int) -> int:
    """K, the number of bins between a row's first and last match."""
    return max(1, num_gallery // ITEMS_PER_BIN)


class _Matches:
    """Each row's matches ordered by (distance, gallery index): their flat indices into the
    B x G chunk and their distances (B x W, padded by repeating the row's last match), and the
    mask of the real slots."""

    def __init__(self, dist: torch.Tensor, element: torch.Tensor, is_match: torch.Tensor
                 ) -> None:
        count = is_match.sum(1)
        flat = dist.view(-1)
        largest = _extreme(dist.dtype, dist.device)
        order = torch.sort(torch.where(is_match, flat[element], largest), dim=1,
                           stable=True).indices  # elements ascend within a row: ties by index
        order = order.gather(1, torch.sort((~is_match).gather(1, order).to(torch.uint8), dim=1,
                                           stable=True).indices)[:, :int(count.max())]
        slot = torch.arange(order.shape[1], device=dist.device)[None, :]
        self.slots = slot < count[:, None]
        last = (count - 1).clamp(min=0)[:, None]  # a row without matches: padding only
        self.element = element.gather(1, order.gather(1, torch.minimum(slot, last)))
        self.dist = flat[self.element]


def _extreme(dtype: torch.dtype, device: torch.device, largest: bool = True) -> torch.Tensor:
    """The largest (or lowest) value of ``dtype``: padding that sorts after (before), or
    stably with, every real distance."""
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    return torch.tensor(info.max if largest else info.min, dtype=dtype, device=device)


def match_positions(dist: torch.Tensor, index: torch.Tensor, is_match: torch.Tensor,
                    is_junk: torch.Tensor, scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based positions (B x W int64) of each row's matches, ordered by (distance, gallery
    index), in its valid ranking, and the mask of the real slots (rows are padded to the widest).

    ``dist`` is B x G (contiguous, some row with a match); ``index``, ``is_match`` and
    ``is_junk`` are :meth:`Gallery.same_identity` of the rows' queries. When few distances
    reach as far as their row's last match (a model that ranks its matches first), only those
    are ranked, each among all the matches of its row; otherwise the module docstring's bins
    count the gallery. Either way the result is exact."""
    element = torch.arange(dist.shape[0], device=dist.device)[:, None] * dist.shape[1] + index
    matches = _Matches(dist, element, is_match)
    same = element[is_match | is_junk]
    if _few_near(dist, matches):
        return _near_positions(dist, matches, same, scratch) + 1, matches.slots
    bins = _Bins(dist, matches, scratch)
    others = bins.flagged(same, scratch)
    in_bin = bins.in_bin(dist.view(-1).index_select(0, others), others, matches)
    return bins.before(element[is_junk]) + in_bin + 1, matches.slots


def _last(matches: _Matches) -> torch.Tensor:
    """Each row's last match distance (B x 1); the lowest value for a row without a match."""
    return torch.where(matches.slots[:, :1], matches.dist[:, -1:],
                       _extreme(matches.dist.dtype, matches.dist.device, largest=False))


def _few_near(dist: torch.Tensor, matches: _Matches) -> bool:
    """Whether, in a sample of columns, at most 1 / NEAR_SHARE of the distances reach as far as
    their row's last match."""
    sample = dist[:, ::max(1, dist.shape[1] // 256)]
    return bool((sample <= _last(matches)).sum() * NEAR_SHARE <= sample.numel())


def _near_positions(dist: torch.Tensor, matches: _Matches, same: torch.Tensor,
                    scratch: Scratch) -> torch.Tensor:
    """For each match slot, the number of matches and valid distances before it, counting
    only the distances not beyond the row's last match (NaN included, to be reported), minus
    the ``same``-identity ones (flat indices)."""
    near = torch.gt(dist, _last(matches), out=scratch.get(dist.shape, torch.bool, dist.device))
    flags = near.logical_not_().view(-1)
    flags[same] = False
    element = _flatnonzero(flags)
    ranked = matches.slots[:, 0]  # rows without a match are not ranked
    row = element // dist.shape[1]
    keep = _take(ranked, row)
    element, row = element[keep], row[keep]
    value = _take(dist.view(-1), element)
    same_value = _take(dist.view(-1), same)[_take(ranked, same // dist.shape[1])]
    if bool(torch.isnan(value).any() or torch.isnan(same_value).any()):
        raise ValueError("the distance matrix contains NaN; cannot rank")
    width = matches.slots.shape[1]
    start = row * width
    first = torch.arange(dist.shape[0], device=dist.device)[:, None] * width
    return _counted_in_groups(value, element, start, _take(matches.slots.sum(1), row),
                              first.expand(matches.slots.shape), matches)


class _Bins:
    """Steps 1 to 3 of the module docstring for a chunk of rows. Every distance's bin is a flat
    index into a B x width table, row by row (a row's last column holds its padded match slots
    and no distance); the bins that hold matches ("shared") have tables of their first match
    slot (a flat index into the B x W matches) and number of match slots."""

    def __init__(self, dist: torch.Tensor, matches: _Matches, scratch: Scratch) -> None:
        rows = dist.shape[0]
        width = _num_bins(dist.shape[1]) + 2 * SPREAD + 3
        self.flat = _flat_bins(dist, matches, width, scratch)
        self.row_start = torch.arange(rows, device=dist.device) * width
        self.m_bins = torch.where(matches.slots, _take(self.flat, matches.element).long(),
                                  self.row_start[:, None] + width - 1)  # rows ascend
        shared, inverse, count = torch.unique_consecutive(
            self.m_bins.view(-1), return_inverse=True, return_counts=True)
        start = count.cumsum(0) - count
        self.first = start[inverse].view(self.m_bins.shape)  # each slot's bin's first slot
        self.shared = torch.zeros(rows * width, dtype=torch.bool, device=dist.device)
        self.shared[shared] = True
        self.start_of = torch.empty(rows * width, dtype=torch.int64, device=dist.device)
        self.count_of = torch.empty_like(self.start_of)
        self.start_of[shared], self.count_of[shared] = start, count

    def flagged(self, excluded: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        """Flat indices (into the B x G chunk), ascending, of the distances in a shared bin,
        except the ``excluded`` ones."""
        flags = torch.index_select(self.shared, 0, self.flat, out=scratch.get(
            self.flat.shape, torch.bool, self.flat.device))
        flags[excluded] = False
        return _flatnonzero(flags)

    def before(self, junk: torch.Tensor) -> torch.Tensor:
        """For each match slot, the number of valid (not ``junk``) distances of its row in
        lower bins (B x W)."""
        hist = torch.bincount(self.flat, minlength=self.shared.numel())
        junk_bins = _take(self.flat, junk).long()
        hist.index_add_(0, junk_bins, torch.full_like(junk_bins, -1))
        upto = hist.cumsum(0)

        def lower(bins: torch.Tensor) -> torch.Tensor:  # distances of the chunk in lower bins
            return _take(upto, bins) - _take(hist, bins)

        return lower(self.m_bins) - lower(self.row_start)[:, None]

    def in_bin(self, value: torch.Tensor, element: torch.Tensor, matches: _Matches
               ) -> torch.Tensor:
        """For each match slot, the number of distances and matches of its bin before it,
        given the other distances of the shared bins (``value`` at flat ``element``)."""
        bins = _take(self.flat, element).long()
        return _counted_in_groups(value, element, _take(self.start_of, bins),
                                  _take(self.count_of, bins), self.first, matches)


def _counted_in_groups(value: torch.Tensor, element: torch.Tensor, start: torch.Tensor,
                       count: torch.Tensor, first: torch.Tensor, matches: _Matches
                       ) -> torch.Tensor:
    """For each match slot, the number of matches and of the given distances before it within
    its group of slots. A group is a run of consecutive slots (a bin's matches, or a row's);
    ``first`` (B x W) is each slot's group's first slot, ``start`` and ``count`` the group of
    each distance (``value`` at flat ``element``), which must be before the group's end."""
    slot, inside = _first_match_after(value, element, start, count, matches)
    per_slot = torch.zeros(first.numel() + 1, dtype=torch.int64, device=value.device)
    per_slot.index_add_(0, slot, inside.long())  # slot numel: after the last group's matches
    upto = per_slot.cumsum(0)[:-1]  # of its group: since the group's first slot
    flat_first = first.reshape(-1)
    own = torch.arange(flat_first.numel(), device=value.device)
    return (upto - _take(upto - per_slot[:-1], flat_first) + own - flat_first).view(first.shape)


def _first_match_after(value: torch.Tensor, element: torch.Tensor, start: torch.Tensor,
                       count: torch.Tensor, matches: _Matches
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """For distances ``value`` at flat ``element`` indices: the flat slot of the first of the
    ``count`` matches from slot ``start`` that is after them in (distance, gallery index)
    order, by binary search (matches are in that order; within a row, flat indices are in
    gallery order), and whether there is one."""
    base, length = start, count
    m_value = torch.cat([matches.dist.view(-1), matches.dist.new_zeros(1)])  # + sentinel
    m_element = torch.cat([matches.element.view(-1), matches.element.new_zeros(1)])
    for _ in range(int(length.max()).bit_length() if length.numel() else 0):
        half = length >> 1
        mid = base + half
        at = _take(m_value, mid)
        up_to = (at < value) | ((at == value) & (_take(m_element, mid) < element))
        up_to &= length > 0
        base = torch.where(up_to, mid + 1, base)
        length = torch.where(up_to, length - half - 1, half)
    return base, base < start + count


def _flatnonzero(flags: torch.Tensor) -> torch.Tensor:
    """Indices of the true entries of a 1-D bool tensor, ascending (numpy on CPU)."""
    if flags.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(flags.numpy()))
    return flags.nonzero().squeeze(1)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` for a 1-D ``values`` (index_select: faster than indexing)."""
    return values.index_select(0, index.view(-1)).view(index.shape)


def _flat_bins(dist: torch.Tensor, matches: _Matches, width: int, scratch: Scratch
               ) -> torch.Tensor:
    """Flat int32 bins (B * G): row r's distances to r * width + SPREAD + 1 + the integer part
    of their scaled value t = (d - first) * K / (last - first), clamped (computed in float32).

    Each step is a monotone rounding of a monotone function, and none makes a NaN out of a
    number (the subtrahend and the scale are finite, the scale positive), so the bin never
    decreases with the distance within [-1, K + 1], where the matches are: the first match is
    in bin SPREAD + 1, the last in bin K + SPREAD + 1 at most. Below and above, t is clamped
    to the :meth:`Scratch.bounds`, so those distances get bins under the first match's and over
    the last match's. If a match falls outside (infinite distances, a span beyond float32), all
    of t is clamped to [-1, K + 1] instead: monotone everywhere. Bins 0 and ``width`` - 1 stay
    empty. Row offsets stay below 2^24, so float32 holds them exactly (a chunk is at most 2^22
    distances). A NaN is an error in a row with a match; other rows are not ranked."""
    num_bins = _num_bins(dist.shape[1])
    wide = torch.float64 if dist.dtype == torch.float64 else torch.float32
    limit = torch.finfo(wide).max
    ranked = matches.slots[:, :1]  # rows without a match are not ranked: any finite numbers
    first = torch.where(ranked, matches.dist[:, :1].to(wide), 0.0).clamp(-limit, limit)
    span = torch.where(ranked, matches.dist[:, -1:].double().clamp(-limit, limit)
                       - first.double(), 1.0)
    scale = (num_bins / span).clamp(1e-30, 1e30).float()  # span 0: all above are past it
    m_scaled = torch.sub(matches.dist, first, out=torch.empty(
        matches.dist.shape, device=dist.device)).mul_(scale)
    in_range = bool(((m_scaled >= -1.0) & (m_scaled <= num_bins + 1.0) | ~ranked).all())
    values = torch.sub(dist, first, out=scratch.get(dist.shape, torch.float32, dist.device))
    nan = torch.isnan(values.amax(1))
    if bool(nan.any()):
        if bool((nan & ranked[:, 0]).any()):
            raise ValueError("the distance matrix contains NaN; cannot rank")
        values[nan] = 0.0
    values.mul_(scale)
    if in_range:
        values.clamp_(*scratch.bounds(dist.shape[1], dist.device))
    else:
        values.clamp_(-1.0, num_bins + 1.0)
    offset = torch.arange(dist.shape[0], device=dist.device, dtype=torch.float32)[:, None]
    values.add_(offset * width + SPREAD + 1.0)
    flat = scratch.get(dist.shape, torch.int32, dist.device)
    return flat.copy_(values).view(-1)
