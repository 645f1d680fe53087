"""Out-of-core streaming: chunk planning within the budget, union of chunks, prefetch,
the chunked row order, and (under mpiexec) streamed training == in-memory training."""

import json
import os

import numpy as np
import pytest

from mpidml.data.batches import InMemoryRows, StreamedRows, step_pieces
from mpidml.data.layout import CSRMatrix, open_dataset
from mpidml.data.loader import load_shard
from mpidml.data.stream import ChunkStream, chunk_bytes_for, parse_memory_budget

from datasets import make_set
from mpirun import HERE, run_mpi


def dense(X):
    return X.toarray() if isinstance(X, CSRMatrix) else X


def chunk_nbytes(c):
    return (c.X.data.nbytes + c.X.indices.nbytes + c.X.indptr.nbytes if isinstance(c.X, CSRMatrix)
            else c.X.nbytes) + c.y.nbytes


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("prefetch", [False, True])
def test_chunks_cover_the_range_within_budget(tmp_path, sparse, prefetch):
    spec, X, y = make_set(tmp_path, "c", [300, 17, 250], d=20, sparse=sparse, dtype=np.float64)
    ds = open_dataset(spec)
    budget = 12_000
    for start, stop in ((0, 567), (100, 420), (5, 5)):
        with ChunkStream(ds, start, stop, budget, prefetch=prefetch) as stream:
            for _epoch in range(2):  # a stream can be iterated again
                chunks = list(stream)
                assert [c.start for c in chunks[1:]] == [c.stop for c in chunks[:-1]]
                if chunks:
                    assert chunks[0].start == start and chunks[-1].stop == stop
                got = np.concatenate([dense(c.X) for c in chunks]) if chunks else X[:0]
                np.testing.assert_array_equal(got, X[start:stop])
                for c in chunks:
                    assert chunk_nbytes(c) <= chunk_bytes_for(budget) + 8 or c.n == 1
                    assert c.X.dtype == np.float64
            if stop - start > 200:
                assert len(chunks) >= 4  # really chunked


def test_parse_memory_budget():
    assert parse_memory_budget("256M") == 256 << 20 and parse_memory_budget("2G") == 2 << 30
    assert parse_memory_budget("300MB") == 300 << 20 and parse_memory_budget("512") == 512 << 20
    for bad in ("100M", "lots", "0.1G"):
        with pytest.raises(ValueError):
            parse_memory_budget(bad)


def test_step_pieces():
    starts = [0, 3, 5, 9]
    assert step_pieces(starts, 0, 9) == [(0, 0, 3), (1, 0, 2), (2, 0, 4)]
    assert step_pieces(starts, 4, 6) == [(1, 1, 2), (2, 0, 1)]
    assert step_pieces(starts, 6, 6) == []


def test_streamed_pieces_equal_in_memory_pieces(tmp_path):
    spec, X, y = make_set(tmp_path, "p", [40, 33], d=6, dtype=np.float32)
    ds = open_dataset(spec)
    shard = load_shard(spec, 1, 0)
    with ChunkStream(ds, 0, 73, 2000) as stream:
        streamed = StreamedRows(stream)
        held = InMemoryRows(shard.X, shard.y, streamed.chunk_sizes)
        assert len(streamed.chunk_sizes) > 3
        for steps in (1, 4, 73, 80):
            seen = []
            for sp, hp in zip(streamed.epoch(steps, 1, 2, 0), held.epoch(steps, 1, 2, 0), strict=True):
                assert len(sp) == len(hp)
                for (Xs, ys, rs), (Xh, yh, rh) in zip(sp, hp):
                    np.testing.assert_array_equal(Xs[rs], Xh[rh])
                    np.testing.assert_array_equal(ys[rs], yh[rh])
                    seen.extend(rh.tolist())
            assert sorted(seen) == list(range(73))  # every row once per epoch
        assert sum(len(r) for _, _, r in streamed.full()) == 73


@pytest.mark.parametrize("p", [2, 3])
def test_streamed_training_equals_in_memory(p, tmp_path):
    res = run_mpi(p, [os.path.join(HERE, "mpi_progs", "stream_cases.py"), str(tmp_path)], timeout=180)
    assert res.returncode == 0, res.output
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["size"] == p and r["replicas_identical"]
    assert r["identical"], r  # same row order -> the same model, bit for bit
    assert r["objective_streamed"] < r["initial"] - 0.05  # it trained
    assert abs(r["objective_streamed"] - r["objective_plain"]) < 0.01, r
    # ps / easgd_async with --memory-budget: the serving rank streams no rows
    assert r["ps_identical"], r
    for k in ("ps_bsp", "ps_asgd", "easgd_async"):
        assert r[k] < r["initial"] - 0.05, r


def test_train_cli_memory_budget(tmp_path):
    from mpidml.data.synth import make_binary_dense

    path = str(tmp_path / "t.h5")
    make_binary_dense(path, 2000, 5, seed=1)
    res = run_mpi(2, ["-m", "mpidml.train", "--data", path, "--memory-budget", "256M", "--epochs", "2",
                      "--batch-size", "200", "-q"], timeout=90)
    assert res.returncode == 0 and "replicas identical: yes" in res.stdout, res.output
    res = run_mpi(2, ["-m", "mpidml.train", "--data", path, "--memory-budget", "100M"], timeout=90)
    assert res.returncode == 2 and "--memory-budget must be >= 256M, got 100M" in res.stderr, res.output
    assert res.stderr.count("mpidml: error") == 1


def test_streamed_bad_values_fail_all_ranks_before_training(tmp_path):
    """Out-of-core mode validates every chunk up front: a NaN deep in rank 1's rows stops
    every rank with one message (exit 2), never one rank in the middle of an epoch."""
    import h5py

    from mpidml.data.synth import binary_dense_blocks, write_blocks

    d = str(tmp_path / "nan")
    write_blocks(d, binary_dense_blocks(3000, 4, seed=1), 3000, 4, np.float32, np.float32, shards=2)
    with h5py.File(os.path.join(d, "part-00001.h5"), "r+") as f:
        f["X"][1234, 2] = np.inf  # global row 2734: rank 1 of 2
    res = run_mpi(2, ["-m", "mpidml.train", "--data", d, "--memory-budget", "256M"], timeout=90)
    assert res.returncode == 2, res.output
    assert "part-00001.h5: /X has NaN or inf in row 1234 (global row 2734)" in res.stderr
    assert "rank 1: " in res.stderr and res.stderr.count("mpidml: error") == 1
