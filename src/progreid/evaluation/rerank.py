"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), equal to the authors' reference code but sparse and blocked.

The reference, over all N = Q + G images: squares the Euclidean distances once, divides every
column by its maximum and transposes (row i of the "original distance" M is column i of d^2
over its maximum); ranks every row; builds for each image p its k1-reciprocal set R(p) (the
neighbours among its k1 + 1 nearest that also have p among theirs) and expands it with R(c)
at k1/2 (rounded half to even) of each c in R(p) whose set shares more than 2/3 of its members
with R(p); encodes p as V_p = exp(-M_p) on that expanded set, normalised to sum 1; replaces V_p
by the mean of the V of its k2 nearest images unless k2 = 1 (local query expansion); takes the
Jaccard distance 1 - sum(min(V_p, V_g)) / (2 - sum(min(V_p, V_g))); and returns
(1 - lambda) * Jaccard + lambda * M on the query x gallery block.

Here the rows of d^2 are produced a block of rows at a time (from the three distance blocks, or
from the features as one float32 matrix product) and only what the method uses is kept:

* neighbour lists: the (value, index)-ordered max(k1 + 1, k2) nearest of every image. Features
  give symmetric distances, so a block is computed from its first image on only (the upper
  triangle: half the products); its entries right of the block are offered, as columns, to the
  lists of the later images. Each list keeps the k + 1 smallest d^2 offered; its largest
  bounds what it can still take: a row reads in full only its groups of 32 entries whose
  minimum is within its bound (itself lowered to the (k + 1)-th smallest group minimum), a
  column keeps its entries within its bound after one comparison each. Offers are merged in
  batches by one radix sort on (image, value bits). A row whose k-th and (k + 1)-th values
  of M tie is sorted in full.
* k-reciprocal sets as sorted pair keys p * N + c; the 2/3 overlap test and the expansion as
  sparse matrix products; V sparse, local query expansion as a sparse product.
* the Jaccard numerator through an inverted index of the gallery encodings.

No N x N matrix is ever held; the only dense output is the Q x G result. Everything is torch
(sparse products by MKL or cuSPARSE), so CUDA inputs are re-ranked on their GPU.

Ties in the neighbour sort are broken by image index, as a stable sort does. The reference uses
numpy's default (unstable) argsort, whose order among exactly equal distances is unspecified;
both agree whenever no tie straddles the cut of a neighbour list, and with duplicate images
(exact ties) this module is the stable-sort reading of the algorithm. When k1 + 1 or k2 exceed
the number of images, the lists hold all images, as the reference's slices do.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from progreid.evaluation.distance import as_features, as_matrix

_CHUNK_ELEMENTS = 1 << 24  # default: distances per block of rows (64 MB of float32)
_PAIR_BUDGET = 1 << 22  # sparse products (query entry x gallery entry) handled at a time
_GROUP = 32  # entries per group minimum in the neighbour search's filters


@dataclass
class _Sparse:
    """Rows of the encodings V in coordinate form, sorted by row, with row offsets."""

    row: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    rowptr: torch.Tensor

    @classmethod
    def from_sorted(cls, row: torch.Tensor, col: torch.Tensor, val: torch.Tensor,
                    num_rows: int) -> _Sparse:
        rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
        rowptr[1:] = torch.bincount(row, minlength=num_rows).cumsum(0)
        return cls(row, col, val, rowptr)


class _DenseSource:
    """Rows of d^2 (columns of the reference's concatenated matrix) from the three blocks,
    which need not be symmetric: every row is read in full."""

    symmetric = False

    def __init__(self, q_g, q_q, g_g) -> None:
        self.q_g = _distance_block(q_g, "q_g")
        self.q_q = _distance_block(q_q, "q_q", self.q_g.device)
        self.g_g = _distance_block(g_g, "g_g", self.q_g.device)
        num_query, num_gallery = self.q_g.shape
        for name, block, shape in (("q_q", self.q_q, (num_query, num_query)),
                                   ("g_g", self.g_g, (num_gallery, num_gallery))):
            if tuple(block.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(block.shape)}; expected {shape} "
                                 f"for q_g of shape {tuple(self.q_g.shape)}")
        self.num_query, self.num_all = num_query, num_query + num_gallery
        self.device = self.q_g.device

    def rows(self, start: int, stop: int, first: int = 0,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """d^2 from images first..N-1 to images start..stop-1 (all on one side of the query
        split), as rows (in ``out`` if given)."""
        q = self.num_query
        if stop <= q:
            block = torch.cat([self.q_q[:, start:stop].T, self.q_g[start:stop]], 1)
        else:
            cols = slice(start - q, stop - q)
            block = torch.cat([self.q_g[:, cols].T, self.g_g[:, cols].T], 1)
        block = _square(block[:, first:])
        return block if out is None else out.copy_(block)

    def rows_of(self, images: torch.Tensor) -> torch.Tensor:
        """Full rows of d^2 (as :meth:`rows`) of any ``images``."""
        q = self.num_query
        block = torch.empty(images.numel(), self.num_all, dtype=self.q_g.dtype,
                            device=self.device)
        query, gallery = images < q, images >= q
        block[query] = torch.cat([self.q_q[:, images[query]].T, self.q_g[images[query]]], 1)
        cols = images[gallery] - q
        block[gallery] = torch.cat([self.q_g[:, cols].T, self.g_g[:, cols].T], 1)
        return _square(block)

    def pairs(self, image: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """d^2 entry (other, image) of the concatenated matrix, for each pair."""
        q = self.num_query
        out = torch.empty(image.shape, dtype=self.q_g.dtype, device=self.device)
        for rows_q, cols_q, block in ((True, True, self.q_q), (True, False, self.q_g),
                                      (False, True, self.q_g.T), (False, False, self.g_g)):
            sel = ((other < q) == rows_q) & ((image < q) == cols_q)
            out[sel] = block[other[sel] - (0 if rows_q else q), image[sel] - (0 if cols_q else q)]
        return _square(out)


class _FeatureSource:
    """Squared Euclidean distances between the query and gallery features, |x|^2 - 2 x.y +
    |y|^2, as one matrix product of the features extended by their squared norm and 1:
    [x, |x|^2, 1] . [-2 y, 1, |y|^2]. They are symmetric, so a block of rows is computed from
    its first image on only; rounding can leave them slightly negative (near-duplicate
    images), and the caller clamps what it keeps at 0."""

    symmetric = True

    def __init__(self, query_features, gallery_features) -> None:
        query = as_features(query_features, "query_features")
        gallery = as_features(gallery_features, "gallery_features").to(query.device)
        if query.shape[1] != gallery.shape[1]:
            raise ValueError(f"query features have dimension {query.shape[1]} but gallery "
                             f"features have {gallery.shape[1]}")
        features = torch.cat([query, gallery])
        norms, ones = features.pow(2).sum(1, keepdim=True), torch.ones_like(features[:, :1])
        self.left = torch.cat([features, norms, ones], 1)
        self.right = torch.cat([features * -2.0, ones, norms], 1)
        self.num_query, self.num_all = query.shape[0], features.shape[0]
        self.device = query.device

    def rows(self, start: int, stop: int, first: int = 0,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """d^2 (unclamped) from images start..stop-1 (rows) to images first..N-1 (columns),
        in ``out`` if given."""
        return torch.mm(self.left[start:stop], self.right[first:].T, out=out)

    def rows_of(self, images: torch.Tensor) -> torch.Tensor:
        """Full rows of d^2 (unclamped) of any ``images``."""
        return torch.mm(self.left[images], self.right.T)

    def pairs(self, image: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """d^2 (unclamped) between each ``image`` and ``other`` (a few thousand pairs at a
        time: small temporaries)."""
        return torch.cat([(self.left[image[i:i + 4096]] * self.right[other[i:i + 4096]]).sum(1)
                          for i in range(0, image.numel(), 4096)])


def _distance_block(values, name: str, device: torch.device | None = None) -> torch.Tensor:
    block = as_matrix(values, name, "a distance matrix", device)
    if block.dtype not in (torch.float32, torch.float64):
        block = block.double()
    if bool(torch.isnan(block).any()):
        raise ValueError(f"{name} contains NaN")
    return block


def _square(dist: torch.Tensor) -> torch.Tensor:
    """d^2 in the input's precision, then float32, as the reference's power(d, 2).astype."""
    return (dist * dist).float()


def _row_blocks(source, chunk: int | None) -> Iterator[slice]:
    """Blocks of images that do not straddle the query / gallery split: ``chunk`` rows each,
    or (``None``) as many rows as keep a block of :meth:`rows` near ``_CHUNK_ELEMENTS``."""
    num_all = source.num_all
    for lo, hi in ((0, source.num_query), (source.num_query, num_all)):
        start = lo
        while start < hi:
            width = num_all - (start if source.symmetric else 0)
            stop = min(start + (chunk or max(1, _CHUNK_ELEMENTS // width)), hi)
            yield slice(start, stop)
            start = stop


class _Candidates:
    """For every image, the ``width`` smallest d^2 offered so far and their images, in order
    of value (+inf and image N where fewer were offered), and ``bound``, the largest of them:
    an offer above it can be dropped. Offers are queued and merged in batches (one radix
    sort of the queue and the lists it touches), so a bound can be looser than the queue
    makes it until :meth:`merge` runs."""

    def __init__(self, num_all: int, width: int, device: torch.device) -> None:
        self.num_all, self.width = num_all, width
        self.val = torch.full((num_all, width), float("inf"), device=device)
        self.idx = torch.full((num_all, width), num_all, dtype=torch.long, device=device)
        self.bound = self.val[:, -1]
        self._queue: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._queued = 0

    def offer(self, image: torch.Tensor, other: torch.Tensor, value: torch.Tensor) -> None:
        """Queue offers ``(image, other, d^2)``; merge once they outnumber half the lists'
        entries."""
        self._queue.append((image, other, value.clamp(min=0.0)))
        self._queued += image.numel()
        if 2 * self._queued > self.val.numel():
            self.merge()

    def merge(self) -> None:
        """Merge the queued offers into the lists: sort the offers and the lists from the
        first image offered on by (image, value), keep the first ``width`` of each image."""
        if not self._queued:
            return
        image, other, value = (torch.cat(part) for part in zip(*self._queue, strict=True))
        self._queue, self._queued = [], 0
        start = int(image.min())
        count, device = self.num_all - start, image.device
        image = torch.cat([torch.arange(count, device=device)[:, None].expand(-1, self.width)
                           .reshape(-1), image - start])
        other = torch.cat([self.idx[start:].reshape(-1), other])
        value = torch.cat([self.val[start:].reshape(-1), value])
        # the bits of a float32 >= 0 order as its value (the sign bit cleared for -0.0)
        key, order = torch.sort(image << 31 | (value.view(torch.int32).long() & 0x7FFFFFFF))
        sizes = torch.bincount(image, minlength=count)
        rank = torch.arange(order.numel(), device=device) - (sizes.cumsum(0) - sizes)[key >> 31]
        keep = order[rank < self.width]
        self.val[start:] = value[keep].view(count, self.width)
        self.idx[start:] = other[keep].view(count, self.width)


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """``torch.nonzero(mask.view(-1))`` of a contiguous bool tensor, scanning words of eight
    entries first (several times faster when few are set)."""
    flat = mask.view(-1)
    whole = flat.numel() // 8 * 8
    words = torch.nonzero(flat[:whole].view(torch.int64)).view(-1)
    pos = (words[:, None] * 8 + torch.arange(8, device=mask.device)).view(-1)
    return torch.cat([pos[flat[pos]], torch.nonzero(flat[whole:]).view(-1) + whole])


def _group_size(extent: int, width: int) -> int:
    """Entries per group for group minima: ``_GROUP``, or fewer so that a row of ``extent``
    entries has 4 * ``width`` groups at least (then the width-th smallest group minimum is
    close to the width-th smallest entry), but one at least."""
    return max(1, min(_GROUP, extent // (4 * width)))


def _row_entries(block: torch.Tensor, bound: torch.Tensor, width: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of the entries of ``block`` that may be among the width smallest of
    their row, given ``bound``, an upper bound of each row's width-th smallest (+inf if
    unknown): those at most the bound, lowered first to the width-th smallest minimum over
    groups of consecutive entries (width entries are at most that large). Only the groups
    whose minimum passes are read entry by entry."""
    rows, extent = block.shape
    group = _group_size(extent, width)
    span = extent // group
    groups = block[:, :span * group].view(rows, span, group)
    minima = groups.amin(2)
    if span >= width:
        kth = torch.topk(minima, width, dim=1, largest=False, sorted=False).values.amax(1)
        bound = torch.minimum(bound, kth)
    row, grp = torch.nonzero(minima <= bound[:, None]).unbind(1)
    hit, pos = torch.nonzero(groups[row, grp] <= bound[row, None]).unbind(1)
    tail_row, tail_col = torch.nonzero(block[:, span * group:] <= bound[:, None]).unbind(1)
    return (torch.cat([row[hit], tail_row]),
            torch.cat([grp[hit] * group + pos, tail_col + span * group]))


def _column_entries(block: torch.Tensor, bound: torch.Tensor, width: int, refine: bool
                    ) -> torch.Tensor:
    """Flat positions in ``block`` (contiguous) of its entries at most ``bound[column]``.
    With ``refine``, the bound is first lowered to the width-th smallest minimum over groups
    of consecutive rows (width entries of the column are at most that large)."""
    rows, extent = block.shape
    if refine:
        group = _group_size(rows, width)
        span = rows // group
        if span >= width:
            minima = block[:span * group].view(span, group, extent).amin(1)
            kth = torch.topk(minima, width, dim=0, largest=False, sorted=False).values.amax(0)
            bound = torch.minimum(bound, kth)
    return _flat_nonzero(block <= bound)


def _column_max(block: torch.Tensor) -> torch.Tensor:
    """``block.amax(0)``, through maxima over groups of 8 consecutive rows (faster on CPU)."""
    rows, extent = block.shape
    whole = rows // 8 * 8
    peak = block[whole:].amax(0) if whole < rows else block[0].clone()
    if whole:
        torch.maximum(peak, block[:whole].view(-1, 8, extent).amax(1).amax(0), out=peak)
    return peak


def _block_offers(block: torch.Tensor, rows: slice, first: int, candidates: _Candidates,
                  symmetric: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a block of d^2 (images ``rows`` x images first..N-1) offers to the candidate
    lists: (image, other, d^2). Each row offers its entries that can be among its width
    smallest; in a symmetric source, so does each column right of the block, for its image
    (its list's bound refined on the block itself while the block has more rows than the
    lists have seen images: the first block)."""
    width = candidates.width
    row, col = _row_entries(block, candidates.bound[rows], width)
    offers = [(row + rows.start, col + first, block[row, col])]
    if symmetric and rows.stop < candidates.num_all:
        # columns up to the block's last row hold no column offers (bound -inf)
        bound = torch.cat([torch.full((rows.stop - first,), -float("inf"), device=block.device),
                           candidates.bound[rows.stop:]])
        pos = _column_entries(block, bound, width, rows.start < rows.stop - rows.start)
        offers.append((pos % block.shape[1] + first, pos // block.shape[1] + rows.start,
                       block.view(-1)[pos]))
    image, other, value = (torch.cat(part) for part in zip(*offers, strict=True))
    return image, other, value


def _neighbour_search(source, k: int, chunk: int | None, out: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over the rows of d^2: the neighbour lists (:func:`_nearest`) of every image,
    its column maximum, and M on the query x gallery block written into ``out``.

    A symmetric source computes each block of rows from its first image on (the upper
    triangle: half the products) and offers the block's columns right of it to the candidate
    lists of the later images, whose column maxima it updates too: an image's maximum is
    complete once its own block is done, its list after the last merge.
    """
    num_all, num_query, device = source.num_all, source.num_query, source.device
    candidates = _Candidates(num_all, min(k + 1, num_all), device)
    col_max = torch.zeros(num_all, dtype=torch.float32, device=device)
    blocks = [(rows, rows.start if source.symmetric else 0) for rows in _row_blocks(source, chunk)]
    # one buffer for all blocks: a fresh one would be paged in every time
    buffer = torch.empty(max((r.stop - r.start) * (num_all - f) for r, f in blocks),
                         device=device)
    for rows, first in blocks:
        shape = (rows.stop - rows.start, num_all - first)
        block = source.rows(rows.start, rows.stop, first, buffer[:shape[0] * shape[1]].view(shape))
        candidates.offer(*_block_offers(block, rows, first, candidates, source.symmetric))
        peak = block.amax(1)
        if source.symmetric:
            torch.maximum(peak, col_max[rows], out=peak)
            if rows.stop < num_all:
                torch.maximum(col_max[rows.stop:], _column_max(block[:, rows.stop - first:]),
                              out=col_max[rows.stop:])
        if not bool((peak > 0).all()):
            image = rows.start + int(torch.nonzero(peak <= 0)[0])
            raise ValueError(f"all distances from image {image} are zero; the reference's "
                             "normalisation by the column maximum is undefined")
        col_max[rows] = peak
        if rows.stop <= num_query:
            torch.div(block[:, num_query - first:], peak[:, None], out=out[rows]).clamp_(min=0.0)
    candidates.merge()
    neighbours, near_dist = _nearest(source, candidates, col_max, k)
    return neighbours, near_dist, col_max


def _nearest(source, candidates: _Candidates, col_max: torch.Tensor, k: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of each row of M = d^2 / ``col_max[:, None]``, ordered by
    (value, index) as a stable argsort orders them: (indices, values).

    The candidate lists hold the k + 1 smallest d^2 of each row (all N when k = N); dividing
    by a positive number keeps their order but can create ties, so a row whose k-th and
    (k+1)-th values of M tie (its set is decided by index among values not all listed) is
    sorted in full, from its row of d^2.
    """
    idx, pos = torch.sort(candidates.idx, dim=1)
    values = candidates.val.gather(1, pos) / col_max[:, None]
    values, order = torch.sort(values, dim=1, stable=True)
    idx = idx.gather(1, order)
    if idx.shape[1] > k:
        tied = torch.nonzero(values[:, k - 1] == values[:, k]).view(-1)
        idx, values = idx[:, :k].contiguous(), values[:, :k].contiguous()
        for images in tied.split(max(1, _CHUNK_ELEMENTS // col_max.numel())):
            rows = source.rows_of(images).clamp_(min=0.0) / col_max[images, None]
            idx[images] = torch.sort(rows, dim=1, stable=True).indices[:, :k]
            values[images] = rows.gather(1, idx[images])
    return idx, values


def _pair_keys(image: torch.Tensor, other: torch.Tensor, num_all: int) -> torch.Tensor:
    return image * num_all + other


def _contains(sorted_keys: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each key is in ``sorted_keys`` (not empty), and its position there if it is."""
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys, pos


def _transposed(keys: torch.Tensor, num_all: int) -> torch.Tensor:
    """Pair keys p * N + c as c * N + p."""
    return keys % num_all * num_all + keys // num_all


def _reciprocal(lists: torch.Tensor) -> torch.Tensor:
    """Sorted pair keys p * N + c of the k-reciprocal neighbours of every image p,
    R(p, k) = {c in N(p, k) : p in N(c, k)}, where N(p, k) is row p of ``lists``."""
    num_all = lists.shape[0]
    ids = torch.arange(num_all, device=lists.device)[:, None]
    keys = torch.sort(_pair_keys(ids, lists, num_all).view(-1)).values
    return keys[_contains(keys, _transposed(keys, num_all))[0]]


@contextmanager
def _sparse_csr():
    """torch warns once that its sparse CSR support is beta; the CSR x CSR products used
    here (MKL on CPU, cuSPARSE on CUDA) are plain and checked by the tests."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
        yield


def _csr(keys: torch.Tensor, num_all: int, val: torch.Tensor | None = None) -> torch.Tensor:
    """N x N sparse CSR matrix with entries ``val`` (default 1) at the sorted, distinct pair
    keys row * N + column (torch's CSR invariants: columns sorted within a row)."""
    rowptr = torch.zeros(num_all + 1, dtype=torch.long, device=keys.device)
    rowptr[1:] = torch.bincount(keys // num_all, minlength=num_all).cumsum(0)
    if val is None:
        val = torch.ones(keys.numel(), device=keys.device)
    return torch.sparse_csr_tensor(rowptr, keys % num_all, val, (num_all, num_all),
                                   check_invariants=False)


def _entries(product: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, value) of a sparse CSR product (columns in no particular order)."""
    rowptr = product.crow_indices()
    row = torch.repeat_interleave(torch.arange(rowptr.numel() - 1, device=rowptr.device),
                                  rowptr.diff())
    return row, product.col_indices(), product.values()


def _encodings(source, neighbours: torch.Tensor, near_dist: torch.Tensor,
               col_max: torch.Tensor, k1: int) -> _Sparse:
    """Sparse V: V[p, g] = exp(-M[p, g]) for g in R*(p, k1), else 0, each row normalised to
    sum 1, with R*(p, k1) = R(p, k1) united with every R(c, k1/2), c in R(p, k1), for which
    |R(p, k1) & R(c, k1/2)| > 2/3 |R(c, k1/2)|.

    Sets are sorted pair keys p * N + c. With A and H the 0/1 matrices of R(., k1) and
    R(., k1/2), the intersection sizes are the entries of the sparse product A H^T on A's
    entries, and the members added the entries of G H, G holding the entries of A that pass.
    """
    num_all, device = source.num_all, source.device
    forward = neighbours[:, :min(k1 + 1, num_all)]
    half = neighbours[:, :min(round(k1 / 2) + 1, num_all)]  # as np.around: half to even
    recip, half_recip = _reciprocal(forward), _reciprocal(half)
    with _sparse_csr():
        shared = torch.sparse.mm(_csr(recip, num_all), _csr(
            torch.sort(_transposed(half_recip, num_all)).values, num_all))
        row, col, count = _entries(shared)
        shared_keys, order = torch.sort(_pair_keys(row, col, num_all))
        found, pos = _contains(shared_keys, recip)
        count = torch.where(found, count[order[pos]], 0.0)
        size = torch.bincount(half_recip // num_all, minlength=num_all)[recip % num_all]
        grows = recip[count.double() > (2.0 / 3.0) * size.double()]
        added = torch.sparse.mm(_csr(grows, num_all), _csr(half_recip, num_all))
    keys = torch.sort(torch.cat([recip, _pair_keys(*_entries(added)[:2], num_all)])).values
    keys = keys[torch.cat([keys[:1] >= 0, keys[1:] != keys[:-1]])]  # unique, sorted
    row, col = keys // num_all, keys % num_all
    ids = torch.arange(num_all, device=device)[:, None]
    known_keys, known_pos = torch.sort(_pair_keys(ids, neighbours, num_all).view(-1))
    found, pos = _contains(known_keys, keys)  # M from the neighbour lists, else recomputed
    dist = torch.where(found, near_dist.view(-1)[known_pos[pos]], 0.0)
    if not bool(found.all()):
        missing = ~found
        dist[missing] = (source.pairs(row[missing], col[missing]).clamp_(min=0.0)
                         / col_max[row[missing]])
    weight = torch.exp(-dist)
    total = torch.zeros(num_all, dtype=weight.dtype, device=device).index_add_(0, row, weight)
    return _Sparse.from_sorted(row, col, weight / total[row], num_all)


def _segments(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand segments: for each element, its segment number and its position in the source."""
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    offset = torch.arange(owner.numel(), device=counts.device) - (counts.cumsum(0) - counts)[owner]
    return owner, starts[owner] + offset


def _budget_chunks(cost: torch.Tensor, budget: int, max_rows: int) -> Iterator[slice]:
    """Consecutive row ranges whose summed ``cost`` stays within ``budget`` (at least one row)
    and that hold at most ``max_rows`` rows."""
    cum = cost.cumsum(0).cpu()
    start, total = 0, cost.numel()
    while start < total:
        base = int(cum[start - 1]) if start else 0
        stop = int(torch.searchsorted(cum, torch.tensor(base + budget), right=True))
        stop = min(max(stop, start + 1), start + max_rows, total)
        yield slice(start, stop)
        start = stop


def _expand(v: _Sparse, nearest: torch.Tensor) -> _Sparse:
    """Local query expansion: V_p <- (1 / k2) sum of V_c over c in N(p, k2), the sparse
    product S V / k2 where row p of S selects the images of ``nearest[p]``."""
    num_all, k2 = nearest.shape
    ids = torch.arange(num_all, device=nearest.device)[:, None]
    select = torch.sort(_pair_keys(ids, nearest, num_all).view(-1)).values
    with _sparse_csr():
        product = torch.sparse.mm(_csr(select, num_all, v.val.new_ones(select.numel())),
                                  torch.sparse_csr_tensor(v.rowptr, v.col, v.val,
                                                          (num_all, num_all),
                                                          check_invariants=False))
    row, col, val = _entries(product)
    return _Sparse(row, col, val / k2, product.crow_indices())


def _jaccard_mix(v: _Sparse, out: torch.Tensor, lambda_value: float) -> None:
    """out <- (1 - lambda) * Jaccard + lambda * out, where out holds M on query x gallery.

    The Jaccard numerator sum(min(V_q, V_g)) runs over an inverted index of the gallery rows;
    pairs sharing no column have Jaccard distance exactly 1, so only the pairs met in the index
    are computed one by one, the others in one pass over ``out``.
    """
    num_query, num_gallery = out.shape
    start = int(v.rowptr[num_query])
    g_col = v.col[start:]
    order = torch.sort(g_col, stable=True).indices
    inv_row, inv_val = v.row[start:][order] - num_query, v.val[start:][order]
    col_count = torch.bincount(g_col, minlength=v.rowptr.numel() - 1)
    col_start = col_count.cumsum(0) - col_count
    q_count = col_count[v.col[:start]]
    row_cost = torch.zeros(num_query, dtype=torch.long, device=out.device).index_add_(
        0, v.row[:start], q_count)
    max_rows = max(1, _PAIR_BUDGET // num_gallery)
    buffer = torch.empty(min(max_rows, num_query) * num_gallery, dtype=out.dtype,
                         device=out.device)  # one buffer: a fresh one would be paged in
    for rows in _budget_chunks(row_cost, _PAIR_BUDGET, max_rows):
        lo, hi = int(v.rowptr[rows.start]), int(v.rowptr[rows.stop])
        owner, pos = _segments(col_start[v.col[lo:hi]], q_count[lo:hi])
        owner += lo
        flat = (v.row[owner] - rows.start) * num_gallery + inv_row[pos]
        numer = buffer[:(rows.stop - rows.start) * num_gallery].zero_()
        numer.index_add_(0, flat, torch.minimum(v.val[owner], inv_val[pos]))
        block = out[rows].view(-1)
        shared = numer[flat]
        jaccard = 1 - shared / (2.0 - shared)
        mixed = jaccard * (1 - lambda_value) + block[flat] * lambda_value
        block.mul_(lambda_value).add_(1 - lambda_value)  # Jaccard 1 where nothing is shared
        block[flat] = mixed


def _re_rank(source, k1: int, k2: int, lambda_value: float, chunk: int | None) -> torch.Tensor:
    """The algorithm of the module docstring on a row source; returns Q x G float32."""
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    num_all, num_query = source.num_all, source.num_query
    if num_query == 0 or num_query == num_all:
        raise ValueError(f"re-ranking needs queries and gallery images, got {num_query} "
                         f"queries and {num_all - num_query} gallery images")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive number of rows, got {chunk!r}")
    k = min(num_all, max(k1 + 1, k2))
    out = torch.empty(num_query, num_all - num_query, dtype=torch.float32, device=source.device)
    neighbours, near_dist, col_max = _neighbour_search(source, k, chunk, out)
    v = _encodings(source, neighbours, near_dist, col_max, k1)
    if k2 != 1:
        v = _expand(v, neighbours[:, :min(k2, num_all)])
    _jaccard_mix(v, out, lambda_value)
    return out


def re_rank(q_g, q_q, g_g, k1: int = 20, k2: int = 6, lambda_value: float = 0.3):
    """Re-ranked Q x G distances from plain (not squared) Euclidean distances: query-gallery
    ``q_g``, query-query ``q_q`` and gallery-gallery ``g_g``, as the authors' reference takes
    them (they are squared once, in their own precision, then float32). Equal to the reference
    within 1e-5. Returns float32: numpy if ``q_g`` is numpy, else a tensor on its device."""
    out = _re_rank(_DenseSource(q_g, q_q, g_g), k1, k2, lambda_value, None)
    return out if isinstance(q_g, torch.Tensor) else out.numpy()


def re_rank_features(query_features, gallery_features, k1: int = 20, k2: int = 6,
                     lambda_value: float = 0.3, chunk: int | None = None):
    """:func:`re_rank` of the Euclidean distances between the features, computed ``chunk``
    rows at a time (default: ~16M distances per chunk) without any N x N matrix (N = Q + G);
    the squared distances come straight from the matrix product. Same result as ``re_rank`` on
    ``pairwise_distance`` blocks within 1e-5 (up to the float rounding of the products).
    Returns float32: numpy if the query features are numpy, else a tensor on their device."""
    out = _re_rank(_FeatureSource(query_features, gallery_features), k1, k2, lambda_value, chunk)
    return out if isinstance(query_features, torch.Tensor) else out.numpy()
