"""Row sources of ``--partition shuffle|sample`` (data/batches.py EpochReadRows), no MPI:
per epoch the ranks' rows are read from the file(s) and visited in the partitioner's
order; shuffle covers range(n) exactly once per epoch across ranks (p = 1..4, uneven n,
dense and CSR, one file and shards); sample draws are reproducible; full() is the
contiguous shard; labels mapped as at load time."""

import itertools

import numpy as np
import pytest

from mpidml.data.batches import EpochReadRows, InMemoryRows
from mpidml.data.loader import load_shard
from mpidml.data.writer import write_dense

from datasets import make_set


def _dense(X):
    return X.toarray() if hasattr(X, "toarray") else X


def visited(source, steps, seed, epoch, rank):
    """(global rows, X rows, y) of one epoch, concatenated over its steps."""
    Xs, ys, count = [], [], 0
    for pieces in source.epoch(steps, seed, epoch, rank):
        assert len(pieces) == 1
        X, y, rows = pieces[0]
        Xs.append(_dense(X)[rows])
        ys.append(y[rows])
        count += len(rows)
    return source.rows_for(seed, epoch, rank), np.concatenate(Xs), np.concatenate(ys), count


CASES = list(itertools.product([1, 2, 3, 4], [(13,), (4, 9)], [False, True]))


@pytest.mark.parametrize("p,sizes,sparse", CASES)
def test_shuffle_reads_every_row_exactly_once_per_epoch(tmp_path, p, sizes, sparse):
    spec, Xref, yref = make_set(str(tmp_path), "s", sizes[0] if len(sizes) == 1 else list(sizes),
                                d=6, sparse=sparse, seed=len(sizes) + p)
    n = len(yref)
    shards = [load_shard(spec, p, r) for r in range(p)]
    sources = [EpochReadRows(s, p, "shuffle") for s in shards]
    orders = []
    for epoch in (1, 2):
        got = [visited(src, 3, 11, epoch, r) for r, src in enumerate(sources)]
        rows = np.concatenate([g[0] for g in got])
        assert sorted(rows.tolist()) == list(range(n))             # exactly once across ranks
        assert [g[3] for g in got] == [s.n for s in shards]        # balanced like the contiguous shards
        for r_rows, X, y, _ in got:                                # what was read is those rows
            np.testing.assert_array_equal(X, Xref[r_rows])
            np.testing.assert_array_equal(y, yref[r_rows])
        orders.append(rows)
    assert not np.array_equal(orders[0], orders[1])                # re-dealt every epoch
    # full(): the contiguous shard, every row exactly once across ranks
    full = [np.concatenate([_dense(X)[rows] for X, _, rows in src.full()]) for src in sources]
    np.testing.assert_array_equal(np.concatenate(full), Xref)
    assert sum(src.n for src in sources) == n


@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("sparse", [False, True])
def test_sample_draws_are_reproducible(tmp_path, p, sparse):
    spec, Xref, yref = make_set(str(tmp_path), "m", [5, 6], d=4, sparse=sparse, seed=p)
    n = len(yref)
    src = [EpochReadRows(load_shard(spec, p, r), p, "sample") for r in range(p)]
    again = [EpochReadRows(load_shard(spec, p, r), p, "sample") for r in range(p)]
    for epoch in (1, 2):
        for r in range(p):
            rows, X, y, count = visited(src[r], 2, 5, epoch, r)
            rows2, X2, y2, _ = visited(again[r], 2, 5, epoch, r)
            np.testing.assert_array_equal(rows, rows2)
            np.testing.assert_array_equal(X, X2)
            np.testing.assert_array_equal(X, Xref[rows])            # repeats read once, visited twice
            np.testing.assert_array_equal(y, yref[rows])
            assert count == src[r].n and ((rows >= 0) & (rows < n)).all()
    draws = {(e, r): src[r].rows_for(5, e, r).tolist() for e in (1, 2, 3) for r in range(p)}
    assert len({tuple(v) for v in draws.values()}) > p              # epochs and ranks draw differently
    assert src[0].rows_for(6, 1, 0).tolist() != draws[(1, 0)]         # and seeds
    allrows = np.concatenate([src[r].rows_for(5, e, r) for r in range(p) for e in range(1, 41)])
    # with replacement, 40 epochs of n draws from n rows: repeats, and (almost surely) every row
    assert len(set(allrows.tolist())) == n and len(allrows) == 40 * n


def test_plus_minus_one_labels_are_mapped_on_reread(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((9, 3)).astype(np.float32)
    y = np.where(rng.random(9) < 0.5, -1.0, 1.0).astype(np.float32)
    write_dense(str(tmp_path / "pm.h5"), X, y)
    shard = load_shard(str(tmp_path / "pm.h5"), 2, 1)
    assert shard.labels_mapped
    for part in ("shuffle", "sample"):
        rows, _, yy, _ = visited(EpochReadRows(shard, 2, part), 2, 0, 1, 1)
        np.testing.assert_array_equal(yy, (y[rows] == 1).astype(np.float32))


def test_reload_time_is_recorded_and_bad_partition_refused(tmp_path):
    spec, _, _ = make_set(str(tmp_path), "t", 10, d=3)
    src = EpochReadRows(load_shard(spec, 1, 0), 1, "shuffle")
    list(src.epoch(2, 0, 1, 0))
    assert len(src.reload_seconds) == 1 and src.reload_seconds[0] >= 0
    with pytest.raises(ValueError, match="shuffle' or 'sample"):
        EpochReadRows(load_shard(spec, 1, 0), 1, "contiguous")
    # the contiguous source is unchanged: the same interface
    shard = load_shard(spec, 1, 0)
    assert [len(p[0][2]) for p in InMemoryRows(shard.X, shard.y).epoch(3, 0, 1, 0)] == [4, 3, 3]
