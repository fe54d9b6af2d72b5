"""Where each query's matches land in its ranking, without sorting its row.

The position of a match in its query's valid ranking (junk removed, ties ordered by gallery
index) is one plus the number of gallery items before it in (distance, gallery index) order,
less the query's junk among them. Only a few items of a row need to be ordered for that; the
rest are counted. Each row is ranked one of two ways, whichever costs less (estimated on a
sample of its columns):

* **Grid** (most rows): the span between the row's first and last match (in float32) is cut
  into about G / 8 cells of equal width; every distance, rounded to float32, is mapped to its
  cell by the same few float32 operations as the matches, a map that never decreases with the
  distance (items below the first match or beyond the last fall into one cell on either side).
  An item in a lower cell than a match is before it, one in a higher cell after it, so a
  histogram of the cells, summed below each match's cell, counts the items before that cell;
  only the few items in a match's cell are ordered.
* **Candidates** (rows whose matches come first, or whose first and last match leave no
  finite span to grid): only the items not beyond the row's last match can be before a match,
  and there are few of them; they are all ordered.

Items are ordered exactly, in the input's own precision, by (distance, gallery index): ties
(float16 and bfloat16 distances tie all the time), -0.0 and 0.0, float64 or int64 values
within float32 rounding of each other. The junk before each match is counted among the query's
same-identity items, ordered the same way. The work is a few passes over each distance,
whatever the model's quality; a long row is processed in column blocks that stay in cache.

A NaN in the row of a query with a match is an error; other rows are not ranked.
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK_ELEMENTS = 1 << 18  # distances processed at a time on CPU: 1 MB of float32, in L2 cache
ITEMS_PER_CELL = 8  # a row of G distances gets about G / 8 grid cells...
MAX_CELLS = 1 << 14  # ...but no more: its histogram stays in cache
CANDIDATE_COST = 20  # ordering one candidate costs about as much as gridding this many items
SAMPLE_STEP = 128  # the candidates of a row are estimated on every 128th column


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
        q_pids = q_pids.contiguous()  # a column of a label matrix would warn and be copied twice
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


def _canonical(values: torch.Tensor) -> torch.Tensor:
    """``values`` with -0.0 made 0.0 (a sort may order them apart; they tie)."""
    return values + 0.0 if values.is_floating_point() else values


def match_positions(dist: torch.Tensor, index: torch.Tensor, is_match: torch.Tensor,
                    is_junk: torch.Tensor, scratch: Scratch) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based positions (B x W int64) of each row's matches, ordered by (distance, gallery
    index), in its valid ranking, and the mask of the real slots (rows are padded to the widest).

    ``dist`` is B x G (contiguous, some row with a match); ``index``, ``is_match`` and
    ``is_junk`` are :meth:`Gallery.same_identity` of the rows' queries."""
    matches = _Matches(dist, index, is_match, is_junk)
    before = _before(dist, matches.index, _canonical(matches.dist.float()), matches.slots[:, 0],
                     scratch)
    return before - matches.junk_before + 1, matches.slots


def _before(dist: torch.Tensor, m_index: torch.Tensor, m_coarse: torch.Tensor,
            ranked: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """For each match slot (B x W: gallery indices ``m_index``, float32 distances
    ``m_coarse``), the number of items of its row before it in (distance, gallery index) order;
    only the ``ranked`` rows (B bool) are ranked, the others count 0."""
    before = torch.zeros_like(m_index)
    cells = _cell_count(dist.shape[1])
    gridded = ranked & _Grid.spans(m_coarse, cells) & _many_candidates(dist, m_coarse[:, -1:])
    for rows, method in ((gridded, _before_by_grid), (ranked & ~gridded, _before_candidates)):
        rows = rows.nonzero()[:, 0]
        if rows.numel() == dist.shape[0]:
            before = method(dist, m_index, m_coarse, scratch)
        elif rows.numel():
            before[rows] = method(dist[rows], m_index[rows], m_coarse[rows], scratch)
    return before


def _cell_count(size: int) -> int:
    """Grid cells per row of ``size`` distances."""
    return min(max(size // ITEMS_PER_CELL, 1), MAX_CELLS)


def _many_candidates(dist: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Rows (B bool) where ordering the items not beyond the row's ``last`` match (float32,
    B x 1) would cost more than the grid, by a count on every SAMPLE_STEP-th column (plus one:
    the last match itself)."""
    sample = dist[:, ::SAMPLE_STEP]
    candidates = ((sample.float() <= last).sum(1) + 1) * (dist.shape[1] / sample.shape[1])
    return candidates * CANDIDATE_COST > dist.shape[1]


class _Grid:
    """Each row's grid: ``cells`` equal cells between its first and last match (float32), one
    below and one beyond; cells are numbered flat over the rows, row r's from r * (cells + 3).
    A distance's cell never decreases with it: every step is a monotone rounding of a monotone
    function, and none makes a NaN (a spanned row's first match and scale are finite, the scale
    positive). The matches' cells (B x W, int64) are computed the same way, and flagged."""

    def __init__(self, m_coarse: torch.Tensor, cells: int) -> None:
        self.first, self.scale = m_coarse[:, :1], self.scales(m_coarse, cells)
        self.cells, self.width = cells, cells + 3
        rows = torch.arange(m_coarse.shape[0], device=m_coarse.device, dtype=torch.int32)
        self.offset = rows[:, None] * self.width + 1
        whole = slice(0, m_coarse.shape[0])
        self.m_cells = self.locate(m_coarse, whole, torch.empty_like(m_coarse), torch.empty(
            m_coarse.shape, dtype=torch.int32, device=m_coarse.device)).long()
        self.hot = torch.zeros(m_coarse.shape[0] * self.width, dtype=torch.bool,
                               device=m_coarse.device)
        self.hot[self.m_cells.view(-1)] = True

    @staticmethod
    def scales(m_coarse: torch.Tensor, cells: int) -> torch.Tensor:
        """Cells per unit of distance of each row (B x 1 float32)."""
        return cells / (m_coarse[:, -1:] - m_coarse[:, :1])

    @staticmethod
    def spans(m_coarse: torch.Tensor, cells: int) -> torch.Tensor:
        """Rows (B bool) whose first and last match span a grid: a finite positive scale."""
        scale = _Grid.scales(m_coarse, cells)[:, 0]
        return torch.isfinite(scale) & (scale > 0)

    def locate(self, values: torch.Tensor, rows: slice, work: torch.Tensor, out: torch.Tensor
               ) -> torch.Tensor:
        """The cells (``out``, int32) of ``values`` (float32, one row for each of ``rows``),
        numbered from the first of ``rows``. ``work`` (float32, of their shape; ``values``
        itself will do) is overwritten."""
        torch.sub(values, self.first[rows], out=work)
        work.mul_(self.scale[rows]).clamp_(-1, self.cells + 1)
        return out.copy_(work).add_(self.offset[:out.shape[0]])  # integral part, then row


def _before_by_grid(dist: torch.Tensor, m_index: torch.Tensor, m_coarse: torch.Tensor,
                    scratch: Scratch) -> torch.Tensor:
    """:func:`_before` of rows that all span a grid (:class:`_Grid`), a block of rows (or of
    a long row's columns) at a time: a histogram of the cells counts the items in lower cells
    than each match; the items in the matches' cells are chosen to be ordered."""
    size = dist.shape[1]
    grid = _Grid(m_coarse, _cell_count(size))
    below = torch.empty_like(m_index)
    chosen = _Chosen(size)
    for rows in _row_blocks(dist):
        first = rows.start * grid.width
        hot = grid.hot[first:first + (rows.stop - rows.start) * grid.width]
        hist = torch.zeros(hot.shape, dtype=torch.int64, device=dist.device)
        for cols in _column_blocks(dist):
            block = dist[rows, cols]
            values = _float32(block, scratch)
            cells = grid.locate(values, rows, scratch.get(values.shape, torch.float32,
                                                          dist.device),
                                scratch.get(values.shape, torch.int32, dist.device)).view(-1)
            hist += torch.bincount(cells, minlength=hot.numel())
            flags = torch.index_select(hot, 0, cells, out=scratch.get(
                cells.shape, torch.bool, dist.device))
            chosen.add(block, _flat_nonzero(flags), rows.start, cols.start)
        # the items not chosen in lower cells than each match's (of its row: less the rows above)
        upto = hist.masked_fill_(hot, 0).cumsum(0)
        row_cell = torch.arange(rows.stop - rows.start, device=dist.device)[:, None] * grid.width
        below[rows] = upto[grid.m_cells[rows] - first] - upto[row_cell] + hist[row_cell]
    return below + chosen.before(m_index)


def _before_candidates(dist: torch.Tensor, m_index: torch.Tensor, m_coarse: torch.Tensor,
                       scratch: Scratch) -> torch.Tensor:
    """:func:`_before` by ordering, in each row, the items not beyond its last match."""
    chosen = _Chosen(dist.shape[1])
    for rows in _row_blocks(dist):
        for cols in _column_blocks(dist):
            block = dist[rows, cols]
            values = _float32(block, scratch)
            flags = torch.le(values, m_coarse[rows, -1:],
                             out=scratch.get(values.shape, torch.bool, dist.device))
            chosen.add(block, _flat_nonzero(flags.view(-1)), rows.start, cols.start)
    return chosen.before(m_index)


def _row_blocks(dist: torch.Tensor) -> list[slice]:
    """Blocks of rows of about BLOCK_ELEMENTS distances on CPU (at least one row; a longer row
    is cut into :func:`_column_blocks`), all rows elsewhere."""
    rows, size = dist.shape
    step = max(1, BLOCK_ELEMENTS // size) if dist.device.type == "cpu" else rows
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _column_blocks(dist: torch.Tensor) -> list[slice]:
    """Blocks of columns: all of them, or BLOCK_ELEMENTS at a time of a row longer than that
    on CPU (one row per block, that stays in cache)."""
    size = dist.shape[1]
    step = BLOCK_ELEMENTS if dist.device.type == "cpu" else size
    return [slice(start, min(start + step, size)) for start in range(0, size, step)]


def _float32(values: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """``values`` rounded to float32 (a scratch copy unless they are float32); a NaN is an
    error (every row here has a match)."""
    if values.dtype != torch.float32:
        values = scratch.get(values.shape, torch.float32, values.device).copy_(values)
    if bool(torch.isnan(values.amax())):
        raise ValueError("the distance matrix contains NaN; cannot rank")
    return values


def _flat_nonzero(flags: torch.Tensor) -> torch.Tensor:
    """Positions of the true entries of a 1-D bool tensor, ascending (numpy on CPU: faster)."""
    if flags.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(flags.numpy()))
    return flags.nonzero()[:, 0]


class _Chosen:
    """The items of a B x ``size`` matrix chosen to be ordered, added block by block: their
    rows, columns and distances (read while the block is in cache)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: list[torch.Tensor] = []
        self.cols: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def add(self, block: torch.Tensor, flat: torch.Tensor, row: int, col: int) -> None:
        """Choose the items at ``flat`` positions in ``block``, the block of the matrix from
        (``row``, ``col``)."""
        width = block.shape[1]
        self.rows.append(flat // width + row)
        self.cols.append(flat % width + col)
        self.values.append(block.reshape(-1)[flat])

    def before(self, m_index: torch.Tensor) -> torch.Tensor:
        """For each match (B x W gallery indices ``m_index``, all chosen), the number of chosen
        items of its row before it in (distance, gallery index) order: its place among them
        ordered by (row, distance, column), less those of the rows above. The int64 keys of
        that order hold B x G x (distinct distances) < 2^63 (B x G < 2^31 for float32)."""
        rows, cols = torch.cat(self.rows), torch.cat(self.cols)
        ordinal = _ordinal(torch.cat(self.values))
        ordinal -= ordinal.min()
        keys = (rows * (int(ordinal.max()) + 1) + ordinal) * self.size + cols
        positions = rows * self.size + cols  # ascending
        m_rows = torch.arange(len(m_index), device=m_index.device)[:, None].expand_as(m_index)
        at = torch.searchsorted(positions, (m_rows * self.size + m_index).reshape(-1))
        above = torch.searchsorted(positions, m_rows.reshape(-1) * self.size)
        return (torch.searchsorted(_sorted(keys), keys[at]) - above).view(m_index.shape)


def _ordinal(values: torch.Tensor) -> torch.Tensor:
    """Non-negative int64 numbers in the order of ``values``, equal for equal values (-0.0 and
    0.0 included): the float32 bits made to order as integers for float32 and 16-bit floats
    (exact), the rank among the distinct values otherwise."""
    if values.is_floating_point() and values.element_size() <= 4:
        bits = (values.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes 0.0
        return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long() + 2**31  # negatives: reversed
    if values.device.type != "cpu":
        return torch.unique(_canonical(values), return_inverse=True)[1]
    return torch.from_numpy(np.unique(_canonical(values).numpy(), return_inverse=True)[1])


def _sorted(values: torch.Tensor) -> torch.Tensor:
    """``values`` (1-D) sorted: numpy's SIMD sort on CPU."""
    if values.device.type != "cpu":
        return torch.sort(values).values
    return torch.from_numpy(np.sort(values.numpy()))
