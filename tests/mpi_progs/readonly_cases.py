"""Read-only and buffer-protocol inputs to the public collectives, many cases in one launch.
Rank 0 prints one JSON line: {"p": p, "results": [{"case", "ok", "detail", "bad_ranks"}]}.

1. ``ring_allreduce(comm, ro, out=out)`` and ``Collectives.allreduce(ro, out=out)`` for
   every impl (auto, ring, rd, native, shm; sum and avg): the read-only input is
   untouched, ``out`` holds the sum (same bits on every rank), also with the debug mode on;
2. a read-only input without ``out`` raises ValueError on every rank naming ``out=``,
   before any message moves (the next collective still works);
3. an object that only offers ``__array__`` with a read-only view (what a JAX CPU array
   gives) works out of place and is refused in place with a TypeError naming ``out=``;
4. ``array.array`` (buffer protocol) in place: the result lands in the array itself;
5. ``ring_reduce_scatter`` / ``ring_allgather`` refuse a read-only buffer the same way.
"""

import array
import json

import numpy as np
from mpi4py import MPI
from report import Report  # tests/mpi_progs/report.py

from mpidml import ring_allgather, ring_allreduce, ring_reduce_scatter
from mpidml.comm.collectives import Collectives

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
report = Report(comm)
results, record = report.results, report.record


def read_only(n, dtype, r):
    a = np.random.default_rng([n, r]).standard_normal(n).astype(dtype)
    a.flags.writeable = False
    return a


def expected(n, dtype, op):
    total = sum(np.random.default_rng([n, r]).standard_normal(n).astype(dtype).astype(np.float64)
                for r in range(p))
    return total / p if op == "avg" else total


def same_everywhere(x):
    return len(set(comm.allgather(x.tobytes()))) == 1


def check_out_of_place(name, call, n, dtype, op):
    ro = read_only(n, dtype, rank)
    before = ro.copy()
    out = np.empty(n, dtype)
    try:
        got = call(ro, out, op)
        tol = 1e-4 if dtype == np.float32 else 1e-12
        ok = (got is out and np.array_equal(ro, before) and same_everywhere(out)
              and np.allclose(out, expected(n, dtype, op), rtol=tol, atol=tol * p))
        record(name, ok, "" if ok else f"max err {np.abs(out - expected(n, dtype, op)).max()}")
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the other ranks must not hang
        record(name, False, repr(exc))


coll = Collectives(comm, debug=False, small_bytes=1024)
coll_dbg = Collectives(comm, debug=True)
for n in (0, 1, 7, 1000, 40_000):
    for dtype in (np.float32, np.float64):
        for op in ("sum", "avg"):
            tag = f"{np.dtype(dtype).name}_{n}_{op}"
            check_out_of_place(f"ring_allreduce_out_{tag}",
                               lambda b, o, op: ring_allreduce(comm, b, op, out=o), n, dtype, op)
            for impl in ("auto", "ring", "rd", "native", "shm"):
                check_out_of_place(f"collectives_{impl}_out_{tag}",
                                   lambda b, o, op, impl=impl: coll.allreduce(b, op, impl=impl, out=o), n, dtype, op)
            check_out_of_place(f"collectives_debug_out_{tag}",
                               lambda b, o, op: coll_dbg.allreduce(b, op, out=o), n, dtype, op)


def refused(name, call, exc_type, needle):
    try:
        call()
    except exc_type as exc:
        record(name, needle in str(exc), str(exc))
    except Exception as exc:  # noqa: BLE001
        record(name, False, f"wrong exception {exc!r}")
    else:
        record(name, False, "no error")


ro = read_only(100, np.float64, rank)
refused("ring_allreduce_in_place_read_only", lambda: ring_allreduce(comm, ro), ValueError, "out=np.empty_like(buf)")
refused("collectives_in_place_read_only", lambda: coll.allreduce(ro, impl="ring"), ValueError, "out=")
refused("collectives_debug_in_place_read_only", lambda: coll_dbg.allreduce(ro), ValueError, "out=")
refused("reduce_scatter_read_only", lambda: ring_reduce_scatter(comm, ro), ValueError, "read-only")
refused("allgather_read_only", lambda: ring_allgather(comm, ro), ValueError, "read-only")
after = np.full(5, float(rank))
ring_allreduce(comm, after)
record("collective_after_refusals", np.all(after == sum(range(p))), after)


class ArrayLike:
    """Offers only ``__array__`` with a read-only view, like a JAX CPU array."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a


like = ArrayLike(read_only(33, np.float32, rank))
check_out_of_place("array_like_out_of_place_ring", lambda b, o, op: ring_allreduce(comm, ArrayLike(b), op, out=o),
                   33, np.float32, "sum")
check_out_of_place("array_like_out_of_place_auto", lambda b, o, op: coll.allreduce(ArrayLike(b), op, out=o),
                   33, np.float32, "avg")
refused("array_like_in_place", lambda: ring_allreduce(comm, like), TypeError, "out=")

buf = array.array("d", [float(rank + 1)] * 9)
ring_allreduce(comm, buf)
record("array_array_in_place_ring", list(buf) == [p * (p + 1) / 2] * 9, list(buf))
buf = array.array("f", [float(rank + 1)] * 9)
coll.allreduce(buf, impl="rd")
record("array_array_in_place_rd", list(buf) == [p * (p + 1) / 2] * 9, list(buf))
refused("bytes_in_place", lambda: ring_allreduce(comm, b"\0" * 8), TypeError, "float32/float64/int32/int64")

coll.release()
if rank == 0:
    print(json.dumps({"p": p, "results": results}))
