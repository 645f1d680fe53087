"""Pure partition functions (no MPI)."""

import itertools

import pytest

from mpidml.comm.ring import segment_counts
from mpidml.data.partition import block_counts, shard_rows


@pytest.mark.parametrize("n,size", list(itertools.product([0, 1, 2, 5, 7, 100, 1001], [1, 2, 3, 4, 7, 8, 13])))
def test_shard_rows_cover_exactly_once(n, size):
    ranges = [shard_rows(n, size, r) for r in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (a0, b0), (a1, b1) in zip(ranges, ranges[1:]):
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
