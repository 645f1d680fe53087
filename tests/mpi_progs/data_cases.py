"""Union-of-shards cases in one mpiexec launch (each launch costs 1-2 s).

    mpiexec -n P python data_cases.py DIR

Rank 0 writes the data sets under DIR (dense and CSR, one file and shard files, and a
-1/+1 labelled set where the last rank holds only +1 rows); then every rank loads its
rows with ``load_shard_collective`` (contiguous, and shuffled for three epochs) and
streams them out-of-core (``open_stream_collective``, tiny budget, two passes), and
sends them to rank 0, which checks that the union is exactly the data set, each row
once. Rank 0 prints one JSON line of results.
"""

import json
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mpidml.data.layout import CSRMatrix  # noqa: E402
from mpidml.data.loader import load_shard_collective  # noqa: E402
from mpidml.data.partition import shuffled_rows  # noqa: E402
from mpidml.data.stream import open_stream_collective  # noqa: E402
from mpidml.data.writer import write_dense  # noqa: E402

from datasets import make_set  # noqa: E402

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
root = sys.argv[1]
LAYOUTS = {"dense_one": (23, False), "csr_one": (23, True),
           "dense_multi": ([6, 1, 9, 7], False), "csr_multi": ([6, 1, 9, 7], True),
           "dense_tiny": (2, False)}  # fewer rows than ranks at p >= 3
refs = {}
if rank == 0:
    for name, (sizes, sparse) in LAYOUTS.items():
        refs[name] = make_set(root, name, sizes, sparse=sparse, dtype=np.float64 if sparse else np.float32,
                              seed=len(name))
    write_dense(os.path.join(root, "pm1.h5"), np.arange(12, dtype=np.float32).reshape(6, 2),
                np.array([-1, 1, -1, 1, 1, 1], np.float32))
specs = comm.bcast({k: v[0] for k, v in refs.items()})
messages = []
results = []


def dense(X):
    return X.toarray() if isinstance(X, CSRMatrix) else X


def check(case, shard, expect_rows):
    """Gather every rank's (rows, X, y) on rank 0 and compare with the reference."""
    got = comm.gather((np.asarray(expect_rows), dense(shard.X), shard.y, str(shard.X.dtype)), root=0)
    if rank == 0:
        name = case.split(":")[0]
        _, X, y = refs[name]
        rows = np.concatenate([g[0] for g in got])
        ok = sorted(rows.tolist()) == list(range(len(y)))          # every row exactly once
        ok = ok and np.array_equal(np.concatenate([g[1] for g in got]), X[rows])
        ok = ok and np.array_equal(np.concatenate([g[2] for g in got]), y[rows])
        ok = ok and {g[3] for g in got} == {str(X.dtype)}
        results.append({"case": case, "ok": bool(ok), "rows": len(rows)})


for name in LAYOUTS:
    shard = load_shard_collective(comm, specs[name], log=messages.append)
    check(f"{name}:contiguous", shard, np.arange(shard.start, shard.stop))
    for epoch in range(3):
        rows = shuffled_rows(shard.n_total, p, rank, seed=11, epoch=epoch)
        shard = load_shard_collective(comm, specs[name], rows=rows)
        check(f"{name}:shuffle_epoch{epoch}", shard, shard.rows)

    # out-of-core: the chunks of every rank's stream, together, are the data set
    with open_stream_collective(comm, specs[name], budget=3000) as stream:
        for epoch in range(2):
            chunks = list(stream)
            X = np.concatenate([dense(c.X) for c in chunks]) if chunks else np.zeros((0, stream.ds.d))
            y = np.concatenate([c.y for c in chunks]) if chunks else np.zeros(0, stream.ds.y_dtype)
            rows = np.concatenate([np.arange(c.start, c.stop) for c in chunks]) if chunks else np.zeros(0, int)
            fake = type("S", (), {"X": X.astype(stream.ds.dtype), "y": y})
            check(f"{name}:stream_pass{epoch}", fake, rows)

pm1 = load_shard_collective(comm, os.path.join(root, "pm1.h5"), log=messages.append)
ys = comm.gather(pm1.y, root=0)
if rank == 0:
    y = np.concatenate(ys)
    results.append({"case": "pm1_mapped_globally", "ok": bool(np.array_equal(y, [0, 1, 0, 1, 1, 1])),
                    "rows": 6})
    sys.stdout.write(json.dumps({"size": p, "results": results, "messages": messages}) + "\n")
