"""Run many ring-collective cases in one mpiexec launch (each launch costs 1-2 s).

Every rank builds the same deterministic random inputs for all ranks, so each rank
checks its own result against a float64 numpy reference; rank digests are then
compared to prove bit-identical results. Rank 0 prints one JSON line of results.
"""

import hashlib
import json
import sys

import numpy as np
from mpi4py import MPI

from mpidml.comm.ring import counters, ring_allgather, ring_allreduce, ring_reduce_scatter, segment_counts

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
lengths = sorted({0, 1, max(p - 1, 0), p, p + 1, 2 * p + 3, 1000, 1_000_003})
results = []


def data(length, dtype, r, case):
    rng = np.random.default_rng([length, case, r, np.dtype(dtype).itemsize])
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(length).astype(dtype)
    return rng.integers(-1000, 1000, length).astype(dtype)


def record(name, length, dtype, ok, got, same_on_all=True):
    """same_on_all: every rank must hold the same bits (not so for reduce-scatter segments)."""
    digests = comm.allgather(hashlib.sha256(got.tobytes()).hexdigest() if same_on_all else "")
    results.append({"case": name, "n": length, "dtype": str(np.dtype(dtype)),
                    "ok": bool(all(comm.allgather(bool(ok)))),
                    "identical": len(set(digests)) == 1})


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-4 * p) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-10)


for dtype in (np.float32, np.float64, np.int64):
    for length in lengths:
        inputs = [data(length, dtype, r, 0) for r in range(p)]
        exact = np.sum([x.astype(np.float64) for x in inputs], axis=0) if length else np.zeros(0)
        # allreduce sum
        buf = inputs[rank].copy()
        before = counters.sent
        ring_allreduce(comm, buf)
        ok = np.allclose(buf, exact, **tol(dtype)) and buf.dtype == np.dtype(dtype)
        # bandwidth-optimal: 2(p-1)/p * n elements sent per rank (within one segment)
        sent = (counters.sent - before) // np.dtype(dtype).itemsize
        ok = ok and abs(sent - 2 * (p - 1) * length / p) <= 2 * (p - 1)
        record("allreduce_sum", length, dtype, ok, buf)
        if np.dtype(dtype).kind == "f":
            buf = inputs[rank].copy()
            ring_allreduce(comm, buf, op="avg")
            record("allreduce_avg", length, dtype, np.allclose(buf, exact / p, **tol(dtype)), buf)
        # reduce-scatter: my segment holds the sum
        counts, offsets = segment_counts(length, p)
        buf = inputs[rank].copy()
        mine = ring_reduce_scatter(comm, buf)
        sl = slice(offsets[rank], offsets[rank] + counts[rank])
        record("reduce_scatter", length, dtype,
               mine.size == counts[rank] and np.allclose(mine, exact[sl], **tol(dtype)), mine, same_on_all=False)
        # allgather: each rank contributes its own segment of a known vector
        full = inputs[0]
        buf = np.zeros(length, dtype)
        buf[sl] = full[sl]
        ring_allgather(comm, buf)
        record("allgather", length, dtype, np.array_equal(buf, full), buf)

# The input buffer must be 1-D contiguous: a clear TypeError, raised on every rank alike.
try:
    ring_allreduce(comm, np.zeros((2, 2)))
    rejected = False
except TypeError:
    rejected = True
results.append({"case": "rejects_2d", "n": 4, "dtype": "float64",
                "ok": bool(all(comm.allgather(rejected))), "identical": True})

if rank == 0:
    sys.stdout.write(json.dumps({"size": p, "lengths": lengths, "results": results}) + "\n")
