"""PK identity sampler: batch structure, epoch length, determinism, multi-process shares."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from progreid.data import DatasetError
from progreid.data.sampler import PKSampler


def _pids(counts: list[int]) -> list[int]:
    """Dataset identities: identity i (labelled 100 + i) has counts[i] images, interleaved."""
    pids = [100 + i for i, c in enumerate(counts) for _ in range(c)]
    return pids[::2] + pids[1::2]


def _check_structure(batch: list[int], pids: list[int], p: int, k: int) -> None:
    assert len(batch) == p * k
    blocks = [batch[i * k:(i + 1) * k] for i in range(p)]
    block_pids = [{pids[j] for j in block} for block in blocks]
    assert all(len(ids) == 1 for ids in block_pids), "each block of K is one identity"
    assert len(set.union(*block_pids)) == p, "P distinct identities"
    for block in blocks:
        available = pids.count(pids[block[0]])
        if available >= k:
            assert len(set(block)) == k, "drawn without replacement"


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(1, 7), min_size=2, max_size=12),
       p=st.integers(1, 4), k=st.integers(1, 5), seed=st.integers(0, 1000))
def test_batches_have_p_identities_with_k_images(counts, p, k, seed):
    p = min(p, len(counts))
    pids = _pids(counts)
    sampler = PKSampler(pids, p, k, seed=seed)
    batches = list(sampler)
    assert len(batches) == len(sampler) == max(1, len(counts) // p)
    for batch in batches:
        _check_structure(batch, pids, p, k)


def test_every_identity_once_per_default_epoch_and_replacement_for_small_ones():
    counts = [1, 2, 3, 8, 8, 8, 5, 4, 9, 2, 6, 7]
    pids = _pids(counts)
    sampler = PKSampler(pids, p=3, k=4, seed=1)
    assert len(sampler) == 4
    seen = Counter(pids[b[i]] for b in sampler for i in range(0, len(b), 4))
    assert seen == Counter(set(pids))
    single = [b[i:i + 4] for b in sampler for i in range(0, 12, 4) if counts[pids[b[i]] - 100] == 1]
    assert single and all(len(set(block)) == 1 for block in single)


def test_longer_epochs_keep_identities_distinct_within_a_batch():
    pids = _pids([3] * 7)
    sampler = PKSampler(pids, p=3, k=2, num_batches=20, seed=4)
    batches = list(sampler)
    assert len(batches) == 20
    for batch in batches:
        _check_structure(batch, pids, 3, 2)


def test_determinism_epochs_and_state_dict():
    pids = _pids([4] * 10)
    a, b = PKSampler(pids, 2, 3, seed=7), PKSampler(pids, 2, 3, seed=7)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    state = a.state_dict()
    assert state == {"epoch": 1, "seed": 7}
    c = PKSampler(pids, 2, 3, seed=0)
    c.load_state_dict(state)
    assert list(c) == epoch1
    assert list(PKSampler(pids, 2, 3, seed=8)) != list(b)


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(1, 6), min_size=4, max_size=16), p=st.integers(1, 3),
       k=st.integers(1, 4), world_size=st.integers(1, 4), seed=st.integers(0, 100),
       epoch=st.integers(0, 5))
def test_ranks_draw_disjoint_shares_whose_union_is_the_global_batch(counts, p, k, world_size,
                                                                    seed, epoch):
    world_size = min(world_size, len(counts) // p)
    pids = _pids(counts)
    single = PKSampler(pids, p * world_size, k, seed=seed)
    ranks = [PKSampler(pids, p, k, seed=seed, rank=r, world_size=world_size)
             for r in range(world_size)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(epoch)
    assert len({len(s) for s in [single, *ranks]}) == 1
    per_rank = [list(s) for s in ranks]
    for step, global_batch in enumerate(single):
        shares = [batches[step] for batches in per_rank]
        for share in shares:
            _check_structure(share, pids, p, k)
        share_pids = [{pids[i] for i in share} for share in shares]
        assert sum(len(s) for s in share_pids) == len(set.union(*share_pids))
        assert [i for share in shares for i in share] == global_batch


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(p=0, k=2), ValueError, "p >= 1 and k >= 1"),
    (dict(p=2, k=0), ValueError, "p >= 1 and k >= 1"),
    (dict(p=4, k=2), DatasetError, "4 distinct identities .* has only 3"),
    (dict(p=2, k=2, world_size=2), DatasetError, "2 \\* 2 = 4 distinct identities"),
    (dict(p=1, k=2, rank=2, world_size=2), ValueError, "rank 2 is outside 0..1"),
    (dict(p=1, k=2, num_batches=0), ValueError, "num_batches must be >= 1"),
    (dict(p=1, k=2, seed=-1), ValueError, "seed must be >= 0"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        PKSampler([0, 0, 1, 2], **kwargs)


def test_without_replacement_identities_with_fewer_than_k_images_are_left_out():
    counts = [1, 2, 3, 8, 8, 8, 5, 4, 9, 2, 6, 7]
    pids = _pids(counts)
    sampler = PKSampler(pids, p=2, k=5, seed=3, replacement=False)
    eligible = {100 + i for i, count in enumerate(counts) if count >= 5}
    assert len(sampler) == len(eligible) // 2
    for batch in sampler:
        _check_structure(batch, pids, 2, 5)
        blocks = [batch[i:i + 5] for i in range(0, len(batch), 5)]
        assert all(len(set(block)) == 5 for block in blocks), "distinct images"
        assert {pids[block[0]] for block in blocks} <= eligible
    with pytest.raises(DatasetError, match="no training identity has more than 9 images"):
        PKSampler(pids, p=2, k=10, replacement=False)
    with pytest.raises(DatasetError, match="only 7 with at least data.k = 5 images"):
        PKSampler(pids, p=8, k=5, replacement=False)
