"""evaluate / evaluate_features against a brute-force stable-sort reference (DESIGN.md rules)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ranking import reference_evaluate  # benchmarks/ranking.py (conftest puts it on the path)

from progreid.evaluation import (
    RankingResult,
    evaluate,
    evaluate_features,
    pairwise_distance,
    positions,
    ranking,
    re_rank_features,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# both ways of ranking a row: on a grid of cells (the items of a match's cell ordered), or by
# ordering all the items up to its last match (rows whose matches come first)
both_paths = pytest.mark.parametrize("candidate_cost", [10**9, 0], ids=["grid", "candidates"])


def assert_same(result: RankingResult, expected) -> None:
    cmc, mean_ap, mean_inp, valid, skipped = expected
    assert result.cmc.shape == cmc.shape
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(mean_ap, rel=0, abs=1e-12)
    assert result.mINP == pytest.approx(mean_inp, rel=0, abs=1e-12)
    assert (result.num_valid, result.num_skipped) == (valid, skipped)
    assert 0 <= result.mINP <= 1 and 0 <= result.mAP <= 1 and np.all(np.diff(result.cmc) >= 0)


@st.composite
def problems(draw, max_query=6, max_gallery=25):
    """Few identities (0 = distractor) and cameras: junk, distractors, queries without match."""
    num_q = draw(st.integers(1, max_query))
    num_g = draw(st.integers(1, max_gallery))
    ids = st.integers(0, 3)
    cams = st.integers(0, 2)
    q_pids = np.array(draw(st.lists(ids, min_size=num_q, max_size=num_q)))
    g_pids = np.array(draw(st.lists(ids, min_size=num_g, max_size=num_g)))
    q_cams = np.array(draw(st.lists(cams, min_size=num_q, max_size=num_q)))
    g_cams = np.array(draw(st.lists(cams, min_size=num_g, max_size=num_g)))
    max_rank = draw(st.integers(1, 30))
    return q_pids, g_pids, q_cams, g_cams, max_rank


def check(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, **kwargs) -> None:
    expected = reference_evaluate(np.asarray(distmat), q_pids, g_pids, q_cams, g_cams, max_rank)
    if expected is None:
        with pytest.raises(ValueError, match="no"):
            evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, **kwargs)
    else:
        assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, **kwargs),
                    expected)


def draw_matrix(data, rows: int, cols: int, values) -> np.ndarray:
    flat = data.draw(st.lists(values, min_size=rows * cols, max_size=rows * cols))
    return np.array(flat, dtype=np.float64).reshape(rows, cols)


@both_paths
@settings(max_examples=100, deadline=None)
@given(problems(), st.data())
def test_evaluate_matches_stable_sort_reference_with_ties(candidate_cost, problem, data):
    q_pids, g_pids, q_cams, g_cams, max_rank = problem
    # integer distances: many ties, ordered by gallery index
    distmat = draw_matrix(data, len(q_pids), len(g_pids), st.integers(0, 4))
    chunk = data.draw(st.sampled_from([None, 1, 2, 5]))
    with mock.patch.object(positions, "CANDIDATE_COST", candidate_cost):
        check(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, chunk=chunk)


@both_paths
@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_evaluate_matches_reference_on_float32_distances(candidate_cost, problem, seed):
    q_pids, g_pids, q_cams, g_cams, max_rank = problem
    rng = np.random.default_rng(seed)
    distmat = (rng.random((len(q_pids), len(g_pids))) - 0.5).astype(np.float32)  # signed
    distmat[:, rng.random(len(g_pids)) < 0.3] = 0.0  # whole tied columns
    distmat[:, rng.random(len(g_pids)) < 0.2] = -0.0  # -0.0 ties with 0.0
    with mock.patch.object(positions, "CANDIDATE_COST", candidate_cost):
        check(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
        check(torch.from_numpy(distmat), q_pids, g_pids, q_cams, g_cams, max_rank)


@settings(max_examples=60, deadline=None)
@given(problems(max_query=8, max_gallery=20), st.integers(1, 3), st.data())
def test_evaluate_features_equals_full_matrix(problem, dim, data):
    """Integer features make every distance exact, so chunked and full must agree exactly."""
    q_pids, g_pids, q_cams, g_cams, max_rank = problem
    query = draw_matrix(data, len(q_pids), dim, st.integers(-2, 2)).astype(np.float32)
    gallery = draw_matrix(data, len(g_pids), dim, st.integers(-2, 2)).astype(np.float32)
    chunk = data.draw(st.sampled_from([None, 1, 3]))
    expected = reference_evaluate(pairwise_distance(query, gallery).numpy(), q_pids, g_pids, q_cams,
                         g_cams, max_rank)
    if expected is None:
        with pytest.raises(ValueError):
            evaluate_features(query, gallery, q_pids, g_pids, q_cams, g_cams, chunk=chunk,
                              max_rank=max_rank)
        return
    assert_same(evaluate_features(query, gallery, q_pids, g_pids, q_cams, g_cams, chunk=chunk,
                                  max_rank=max_rank), expected)


@both_paths
@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1), st.sampled_from(["float16", "float64"]),
       st.booleans())
def test_evaluate_compares_in_the_inputs_own_precision(candidate_cost, problem, seed, dtype,
                                                        as_torch):
    """float16 distances tie often (real ties, ordered by gallery index); float64 ones may
    differ only below float32's precision; infinities on both sides."""
    q_pids, g_pids, q_cams, g_cams, max_rank = problem
    rng = np.random.default_rng(seed)
    pool = np.array([0.0, -0.0, 0.5, 1.0, 1.0 + 2.0**-40, 1.0 + 2.0**-9, 3.0, np.inf, -np.inf])
    distmat = rng.choice(pool, (len(q_pids), len(g_pids))).astype(dtype)
    with mock.patch.object(positions, "CANDIDATE_COST", candidate_cost):
        check(torch.from_numpy(distmat) if as_torch else distmat, q_pids, g_pids, q_cams,
              g_cams, max_rank)


def market_like_labels(rng, queries=60, gallery=1800, identities=40, distractors=300):
    q_pids = rng.integers(1, identities, queries)
    g_pids = np.concatenate([rng.integers(1, identities, gallery - distractors),
                             np.zeros(distractors, dtype=np.int64)])
    return q_pids, g_pids, rng.integers(0, 4, queries), rng.integers(0, 4, gallery)


@both_paths
@pytest.mark.parametrize("shift", [-1.0, -0.1, 0.0, 0.1, 0.3, 0.6, 1.0, 5.0])
def test_quality_sweep_equals_reference(candidate_cost, shift):
    """The benchmark's recipe (rand + shift * other identity) from matches last to matches
    far ahead of everything else, with a gallery large enough for many bins."""
    rng = np.random.default_rng(7)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng)
    distmat = (rng.random((len(q_pids), len(g_pids)), dtype=np.float32)
               + np.float32(shift) * (q_pids[:, None] != g_pids[None, :]))
    half = distmat.astype(np.float16)
    with mock.patch.object(positions, "CANDIDATE_COST", candidate_cost):
        assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams),
                    reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 50))
        assert_same(evaluate(torch.from_numpy(half), q_pids, g_pids, q_cams, g_cams),
                    reference_evaluate(half, q_pids, g_pids, q_cams, g_cams, 50))


def test_many_tied_matches_share_a_bin():
    """Few identities and three distance values: a hundred matches tie in one bin."""
    rng = np.random.default_rng(8)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng, queries=30, gallery=600,
                                                        identities=4, distractors=50)
    distmat = rng.integers(0, 3, (30, 600)).astype(np.float32)
    expected = reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams), expected)
    assert_same(evaluate(distmat.astype(np.int64), q_pids, g_pids, q_cams, g_cams), expected)


def test_worker_threads_and_blocks_do_not_change_the_result(monkeypatch):
    monkeypatch.setattr(ranking, "_CHUNK_ELEMENTS", 1000)  # one query per block
    rng = np.random.default_rng(9)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng, queries=25)
    distmat = rng.random((25, 1800)) + 0.2 * (q_pids[:, None] != g_pids[None, :])
    expected = reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    for threads in (1, 3):
        torch.set_num_threads(threads)  # the fixture restores the setting
        assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams), expected)
        assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams, chunk=4), expected)


@both_paths
def test_nan_is_an_error_only_where_a_query_is_ranked(candidate_cost):
    """A NaN in the row of a query without a match is no error: that query is skipped."""
    distmat = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]])
    labels = np.array([1, 2, 1]), np.array([0, 0]), np.array([1, 1, 1])
    with mock.patch.object(positions, "CANDIDATE_COST", candidate_cost):
        check(distmat, np.array([5, 2]), *labels, 3)
        with pytest.raises(ValueError, match="NaN"):
            evaluate(distmat, np.array([1, 2]), *labels, 3)


def test_re_ranked_distances_equal_reference():
    rng = np.random.default_rng(10)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng, queries=30, gallery=200,
                                                        identities=12, distractors=20)
    centres = rng.standard_normal((12, 8))
    query = (centres[q_pids] + rng.standard_normal((30, 8))).astype(np.float32)
    gallery = (centres[g_pids] + rng.standard_normal((200, 8))).astype(np.float32)
    distmat = re_rank_features(query, gallery, k1=10, k2=4)
    assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams),
                reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 50))


def test_hand_computed_example_ties_by_gallery_index():
    # gallery:   0: match  1: junk  2: other  3: match (tied with 2)  4: distractor
    distmat = np.array([[0.4, 0.1, 0.2, 0.2, 0.05]])
    result = evaluate(distmat, [7], [7, 7, 3, 7, 0], [0], [1, 0, 1, 2, 1], max_rank=5)
    # valid ranking: 4 (0.05), 2 (0.2, index 2 before 3), 3 (0.2), 0 (0.4): matches at 3 and 4
    np.testing.assert_array_equal(result.cmc, [0, 0, 1, 1, 1])
    assert result.mAP == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert result.mINP == pytest.approx(2 / 4)
    assert (result.num_valid, result.num_skipped) == (1, 0)


def test_larger_random_problem_across_chunks(monkeypatch):
    monkeypatch.setattr(ranking, "_CHUNK_ELEMENTS", 2000)  # sub-blocks of 5 queries
    rng = np.random.default_rng(3)
    q_pids, g_pids = rng.integers(1, 30, 70), rng.integers(0, 30, 400)
    q_cams, g_cams = rng.integers(0, 6, 70), rng.integers(0, 6, 400)
    distmat = rng.random((70, 400)).astype(np.float32)
    expected = reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    for chunk in (None, 1, 7, 64):
        assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams, chunk=chunk), expected)
    query, gallery = rng.integers(-3, 4, (70, 4)), rng.integers(-3, 4, (400, 4))
    expected = reference_evaluate(pairwise_distance(query, gallery).numpy(), q_pids, g_pids, q_cams,
                         g_cams, 50)
    assert_same(evaluate_features(query, gallery, q_pids, g_pids, q_cams, g_cams), expected)


def test_cosine_metric_and_torch_inputs():
    rng = np.random.default_rng(4)
    query, gallery = rng.standard_normal((9, 5)), rng.standard_normal((40, 5))
    q_pids, g_pids = rng.integers(0, 4, 9), rng.integers(0, 4, 40)
    q_cams, g_cams = rng.integers(0, 2, 9), rng.integers(0, 2, 40)
    dist = pairwise_distance(query, gallery, "cosine").numpy()
    unit_q = query / np.linalg.norm(query, axis=1, keepdims=True)
    unit_g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    np.testing.assert_allclose(dist, 1 - unit_q @ unit_g.T, atol=1e-5)
    result = evaluate_features(torch.from_numpy(query), torch.from_numpy(gallery),
                               torch.from_numpy(q_pids), g_pids.tolist(), q_cams, g_cams,
                               metric="cosine")
    assert_same(result, reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams, 50))


def test_euclidean_distance_is_plain_not_squared():
    dist = pairwise_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert dist.dtype == torch.float32
    np.testing.assert_allclose(dist.numpy(), [[5.0, 0.0]])


def test_integer_and_half_distances_are_accepted():
    q_pids, g_pids, q_cams, g_cams = [1, 2], [1, 2, 1], [0, 0], [1, 1, 1]
    ints = np.array([[3, 1, 2], [0, 5, 5]])
    expected = reference_evaluate(ints, *map(np.array, (q_pids, g_pids, q_cams, g_cams)), 3)
    assert_same(evaluate(ints, q_pids, g_pids, q_cams, g_cams, 3), expected)
    assert_same(evaluate(torch.tensor(ints, dtype=torch.float16), q_pids, g_pids, q_cams,
                         g_cams, 3), expected)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"distmat": np.zeros(3)}, ValueError, "2-D"),
    ({"query_pids": [1]}, ValueError, "query_pids has shape"),
    ({"gallery_camids": [0, 1]}, ValueError, "gallery_camids has shape"),
    ({"query_pids": [1.0, 2.0]}, TypeError, "integers"),
    ({"max_rank": 0}, ValueError, "max_rank"),
    ({"chunk": 0}, ValueError, "chunk"),
    ({"distmat": np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]])}, ValueError, "NaN"),
    ({"query_pids": [5, 6]}, ValueError, "none of the 2 queries"),
])
def test_bad_input_is_reported(kwargs, error, message):
    args = {"distmat": np.ones((2, 3)), "query_pids": [1, 2], "gallery_pids": [1, 2, 1],
            "query_camids": [0, 0], "gallery_camids": [1, 1, 1]}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        evaluate(**args)


def test_feature_errors_name_the_problem():
    with pytest.raises(ValueError, match="dimension"):
        evaluate_features(np.ones((2, 3)), np.ones((3, 4)), [1, 2], [1, 2, 1], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(np.ones((2, 3)), np.ones((3, 3)), metric="manhattan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        pairwise_distance(np.full((1, 2), np.inf), np.ones((3, 2)))


@both_paths
@settings(max_examples=40, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_integers_beyond_float32_precision_are_ranked_exactly(candidate_cost, problem, seed):
    """int64 distances 2^40 + a few units round to one float32: each run of them is ordered
    by its exact values, then by gallery index."""
    q_pids, g_pids, q_cams, g_cams, max_rank = problem
    rng = np.random.default_rng(seed)
    distmat = 2**40 + rng.integers(-3, 4, (len(q_pids), len(g_pids)))
    distmat[:, rng.random(len(g_pids)) < 0.2] = -(2**40)
    with mock.patch.object(positions, "CANDIDATE_COST", candidate_cost):
        check(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)


def test_bfloat16_distances_equal_reference():
    rng = np.random.default_rng(11)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng)
    distmat = torch.from_numpy(rng.random((len(q_pids), len(g_pids)), dtype=np.float32)
                               + 0.3 * (q_pids[:, None] != g_pids[None, :])).bfloat16()
    assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams),
                reference_evaluate(distmat.float().numpy(), q_pids, g_pids, q_cams, g_cams, 50))


@st.composite
def layouts(draw) -> dict[str, int]:
    """Settings of :mod:`positions`: rows cut into column blocks (down to one column), blocks
    of several rows, one cell per row or one item per cell, either method or both by cost."""
    return {"BLOCK_ELEMENTS": draw(st.sampled_from([1, 3, 8, 64, 1 << 18])),
            "ITEMS_PER_CELL": draw(st.sampled_from([1, 4, 100])),
            "MAX_CELLS": draw(st.sampled_from([1, 2, 1 << 16])),
            "CANDIDATE_COST": draw(st.sampled_from([0, 20, 10**9])),
            "SAMPLE_STEP": draw(st.sampled_from([1, 3, 128]))}


def tie_pool(dtype: str) -> np.ndarray:
    """Distances that tie (-0.0 with 0.0), differ below float32's precision or are infinite."""
    if dtype == "int64":
        return 2**40 + np.arange(-3, 4)
    return np.array([0.0, -0.0, 0.5, 1.0, 1.0 + 2.0**-40, 1.0 + 2.0**-9, 3.0, np.inf, -np.inf]
                    ).astype(dtype)


@settings(max_examples=150, deadline=None)
@given(problems(max_gallery=40), layouts(), st.integers(0, 2**32 - 1),
       st.sampled_from(["float16", "float32", "float64", "int64"]), st.booleans())
def test_blocks_cells_and_methods_do_not_change_the_result(problem, layout, seed, dtype, ties):
    """Long rows cut into column blocks (a tie run across several), cells holding many items,
    rows ranked either way: always the stable-sort reference."""
    q_pids, g_pids, q_cams, g_cams, max_rank = problem
    rng = np.random.default_rng(seed)
    shape = (len(q_pids), len(g_pids))
    distmat = rng.choice(tie_pool(dtype), shape) if ties else rng.random(shape).astype(dtype)
    with mock.patch.multiple(positions, **layout):
        check(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)


@both_paths
@pytest.mark.parametrize("block_elements", [64, 1 << 18])
def test_many_ties_at_the_match_value(candidate_cost, block_elements):
    """Most of each row ties with its matches (1.0), the rest on either side: a match's place
    in the tie run is its gallery order, the run spread over many column blocks."""
    rng = np.random.default_rng(12)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng, queries=20, gallery=1000,
                                                        identities=5, distractors=100)
    distmat = rng.choice(np.array([0.5, 1.0, 1.0, 1.0, 2.0], dtype=np.float32), (20, 1000))
    distmat[q_pids[:, None] == g_pids[None, :]] = 1.0
    patches = {"CANDIDATE_COST": candidate_cost, "BLOCK_ELEMENTS": block_elements}
    with mock.patch.multiple(positions, **patches):
        for matrix in (distmat, distmat.astype(np.float16), distmat.astype(np.float64)):
            assert_same(evaluate(matrix, q_pids, g_pids, q_cams, g_cams),
                        reference_evaluate(matrix, q_pids, g_pids, q_cams, g_cams, 50))


def test_rows_of_one_block_are_ranked_by_their_own_method():
    """Queries whose matches come first (few items up to the last match: ordered as
    candidates) beside queries whose matches are spread (gridded), in the same blocks."""
    rng = np.random.default_rng(13)
    q_pids, g_pids, q_cams, g_cams = market_like_labels(rng, queries=40, gallery=4000)
    other = q_pids[:, None] != g_pids[None, :]
    distmat = rng.random((40, 4000), dtype=np.float32) + np.float32(0.1) * other
    distmat[::2] += np.float32(5.0) * other[::2]  # even queries: matches first
    calls = {}
    for name in ("_before_by_grid", "_before_candidates"):
        calls[name] = mock.patch.object(positions, name, wraps=getattr(positions, name))
    with calls["_before_by_grid"] as grid, calls["_before_candidates"] as candidates:
        assert_same(evaluate(distmat, q_pids, g_pids, q_cams, g_cams),
                    reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, 50))
    assert grid.called and candidates.called


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=50),
       st.tuples(finite32, finite32), st.sampled_from([1, 2, 7, 1 << 16]))
def test_grid_cells_never_decrease_with_the_distance(values, span, cells):
    """The grid's whole claim: an item in a lower cell than a match's is below it, one in a
    higher cell above it (infinities, -0.0, subnormals and huge spans included)."""
    first, last = sorted(span)
    m_coarse = torch.tensor([[first, last]], dtype=torch.float32)
    if not bool(positions._Grid.spans(m_coarse, cells)[0]):
        return  # ranked by candidates
    grid = positions._Grid(m_coarse, cells)
    items = torch.tensor(sorted(values) + [first, last], dtype=torch.float32)
    items = items[torch.sort(items, stable=True).indices][None, :]
    located = grid.locate(items, slice(0, 1), torch.empty_like(items),
                          torch.empty(items.shape, dtype=torch.int32))[0]
    assert bool((located[1:] >= located[:-1]).all())
    assert int(located.min()) >= 0 and int(located.max()) < grid.width
    for match, cell in zip((first, last), grid.m_cells[0].tolist(), strict=True):
        assert located[items[0] == match].tolist() == [cell] * int((items[0] == match).sum())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64,
                                   torch.int64])
def test_ordinals_order_as_the_distances(dtype):
    """Equal distances (-0.0 and 0.0) get equal numbers, larger ones larger numbers, in the
    input's own precision (float64 and int64 beyond float32's)."""
    if dtype == torch.int64:
        values = torch.tensor([2**40 + 1, -(2**40), 2**40, 3, 2**40 + 1, -5])
    else:
        values = torch.tensor([1.0, -0.0, 0.0, float("inf"), -2.5, 1.0 + 2.0**-40, 1.0,
                               float("-inf"), 1e-40, 1.0 + 2.0**-9], dtype=torch.float64)
        values = values.to(dtype)
    ordinal = positions._ordinal(values)
    assert bool((ordinal >= 0).all())
    for i in range(len(values)):
        for j in range(len(values)):
            assert bool(ordinal[i] < ordinal[j]) == bool(values[i] < values[j])
