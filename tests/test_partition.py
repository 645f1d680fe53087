"""Pure partition functions (no MPI)."""

import itertools

import numpy as np
import pytest

from mpidml.comm.ring import segment_counts
from mpidml.data.partition import (
    block_counts,
    epoch_permutation,
    feature_columns,
    file_spans,
    sampled_rows,
    shard_rows,
    shuffled_rows,
)


@pytest.mark.parametrize("n,size", list(itertools.product([0, 1, 2, 5, 7, 100, 1001], [1, 2, 3, 4, 7, 8, 13])))
def test_shard_rows_cover_exactly_once(n, size):
    ranges = [shard_rows(n, size, r) for r in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (_, b0), (a1, _) in zip(ranges, ranges[1:]):
        assert b0 == a1  # contiguous: no overlap, no gap
    sizes = [b - a for a, b in ranges]
    assert sum(sizes) == n and all(s >= 0 for s in sizes)
    assert max(sizes) - min(sizes) <= 1
    assert sizes == block_counts(n, size)
    if size > n:
        assert sizes.count(0) == size - n


def test_remainder_goes_to_first_ranks():
    assert [shard_rows(10, 4, r) for r in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]


def test_segment_offsets_match_counts():
    counts, offsets = segment_counts(11, 4)
    assert counts == [3, 3, 3, 2] and offsets == [0, 3, 6, 9]


@pytest.mark.parametrize("args", [(5, 0, 0), (5, 2, 2), (5, 2, -1), (-1, 2, 0)])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        shard_rows(*args)


# --- the other partitioners -------------------------------------------------------------


@pytest.mark.parametrize("n,size", [(0, 1), (1, 3), (10, 3), (101, 4), (7, 8)])
def test_shuffle_covers_every_row_once_per_epoch(n, size):
    perms = []
    for epoch in range(3):
        parts = [shuffled_rows(n, size, r, seed=7, epoch=epoch) for r in range(size)]
        assert [len(p) for p in parts] == block_counts(n, size)
        allrows = np.concatenate(parts)
        assert sorted(allrows.tolist()) == list(range(n)) and allrows.dtype == np.int64
        perms.append(allrows)
        # pure: same answer again (what another rank computes)
        assert np.array_equal(shuffled_rows(n, size, 0, 7, epoch), parts[0])
    if n > 5:
        assert not np.array_equal(perms[0], perms[1])  # a new order every epoch
        assert not np.array_equal(perms[0], np.arange(n))
        assert not np.array_equal(epoch_permutation(n, 8, 0), perms[0])  # seed matters


def test_sampling_with_replacement():
    n, size, samples = 50, 3, 3000
    parts = [sampled_rows(n, size, r, seed=1, epoch=0, samples=samples) for r in range(size)]
    assert [len(p) for p in parts] == block_counts(samples, size)
    allrows = np.concatenate(parts)
    assert allrows.min() >= 0 and allrows.max() < n and allrows.dtype == np.int64
    counts = np.bincount(allrows, minlength=n)
    assert (counts > 0).all() and counts.max() < 3 * samples / n  # roughly uniform
    assert len(np.unique(parts[0])) < len(parts[0])  # repeats happen
    assert not np.array_equal(parts[0][:100], parts[1][:100])  # independent streams
    assert not np.array_equal(parts[0], sampled_rows(n, size, 0, seed=1, epoch=1, samples=samples))
    assert np.array_equal(parts[2], sampled_rows(n, size, 2, seed=1, epoch=0, samples=samples))
    assert len(sampled_rows(n, 4, 1, 0, 0)) == block_counts(n, 4)[1]  # default: n samples
    assert len(sampled_rows(0, 2, 0, 0, 0)) == 0


@pytest.mark.parametrize("d,size", [(1, 1), (10, 3), (3, 5), (1000, 8)])
def test_feature_columns_partition_the_columns(d, size):
    blocks = [feature_columns(d, size, r) for r in range(size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == d
    assert all(b0[1] == b1[0] for b0, b1 in zip(blocks, blocks[1:]))


def test_file_spans():
    offsets = [0, 7, 8, 13, 22]  # files of 7, 1, 5, 9 rows
    assert file_spans(offsets, 0, 22) == [(0, 0, 7), (1, 0, 1), (2, 0, 5), (3, 0, 9)]
    assert file_spans(offsets, 5, 9) == [(0, 5, 7), (1, 0, 1), (2, 0, 1)]
    assert file_spans(offsets, 8, 13) == [(2, 0, 5)]
    assert file_spans(offsets, 4, 4) == []
    for n_ranks in (1, 2, 3, 4, 30):
        pieces = [s for r in range(n_ranks) for s in file_spans(offsets, *shard_rows(22, n_ranks, r))]
        assert sum(b - a for _, a, b in pieces) == 22
    with pytest.raises(ValueError):
        file_spans(offsets, 3, 23)
