"""Collectives (comm/collectives.py) at one size p, many cases in one launch.
Rank 0 prints one JSON line: {"p": p, "nodes": L, "results": [{"case", "ok", "detail"}]}.

1. every buffer size across every auto threshold (the default 64 KiB and a 1 KiB
   instance), float32 and float64, impl auto and each forced algorithm: every rank ends
   with the same bits, the sum agrees with numpy's float64 sum, auto ran what the policy
   says (the instance's ``calls``);
2. native MPI_Allreduce alone: identical bits on every rank (the assumption auto's
   small-message choice rests on), many sizes, several inputs each;
3. two Collectives in one process: counters and debug mode do not leak into each other
   nor into the module-level defaults;
4. control exchange with named fields, bcast, allgather_sum, uncounted().
"""

import hashlib
import json
import sys

import numpy as np
from mpi4py import MPI
from report import Report  # tests/mpi_progs/report.py

from mpidml.comm import debug
from mpidml.comm.codecs import make_codec
from mpidml.comm.collectives import CONTROL, Collectives, ControlValues
from mpidml.comm.common import DEFAULT_COUNTERS
from mpidml.comm.select import allreduce as module_allreduce
from mpidml.comm.select import policy

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
report = Report(comm)
results, record = report.results, report.record


def inputs(n, dtype, r, trial=0):
    rng = np.random.default_rng([n, r, trial, 31])
    return (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(dtype)


def same_everywhere(x) -> bool:
    return len(set(comm.allgather(hashlib.sha256(x.tobytes()).hexdigest()))) == 1


# ---- 1. sizes across every threshold ---------------------------------------------------
default = Collectives(comm)
small = Collectives(comm, small_bytes=1024)
nodes = default.context().layout.num_nodes
impls = ["auto", "native", "ring", "rd"] + (["shm"] if nodes == 1 else ["hier"])
for dtype in (np.float32, np.float64):
    item = np.dtype(dtype).itemsize
    thresholds = (default.small_bytes, small.small_bytes)
    nbytes = {item, 3 * item, 420, 4096, 1 << 20}
    for t in thresholds:
        nbytes |= {t - item, t, t + item, 2 * t}
    for nb in sorted(nbytes):
        n = nb // item
        exact = np.sum([inputs(n, dtype, r).astype(np.float64) for r in range(p)], axis=0)
        for coll in (default, small):
            for impl in impls if coll is default else ["auto"]:
                for op in ("sum", "avg") if impl == "auto" else ("sum",):
                    buf = inputs(n, dtype, rank)
                    before = dict(coll.calls)
                    out = coll.allreduce(buf, op, impl=impl)
                    ran = [k for k in coll.calls if coll.calls[k] != before.get(k, 0)]
                    want = exact / p if op == "avg" else exact
                    scale = np.sum([np.abs(inputs(n, dtype, r).astype(np.float64)) for r in range(p)], axis=0)
                    eps = np.finfo(dtype).eps * p * 4
                    tol = eps * (scale / (p if op == "avg" else 1)) + 1e-300
                    right = out is buf and bool(np.all(np.abs(out - want) <= tol))
                    expected = impl if impl != "auto" else policy(n * item, p, nodes, coll.small_bytes)
                    name = f"{np.dtype(dtype).name}_{nb}B_{impl}_{op}" + ("_small1K" if coll is small else "")
                    record(name, right and same_everywhere(out) and ran == [expected],
                           f"ran {ran}, expected {expected}")

# ---- 2. native alone: identical bits on every rank, several inputs per size -------------
bad = []
for dtype in (np.float32, np.float64):
    for n in (1, 2, 3, 5, 7, 31, 100, 101, 104, 255, 1023, 4096, 8191, 16383, 16384, 16385, 65537, 300_001):
        for trial in range(3):
            x = inputs(n, dtype, rank, trial)
            comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
            if not same_everywhere(x):
                bad.append((np.dtype(dtype).name, n, trial))
record("native_mpi_allreduce_bit_identical_on_every_rank", not bad, bad)

# ---- 3. two instances do not leak into each other ---------------------------------------
a, b = Collectives(comm, debug=True), Collectives(comm, debug=False)
default_before = (DEFAULT_COUNTERS.total, debug.default.total())
x = np.ones(10)
a.allreduce(x)
a.bcast(x)
leak = (b.counters.total, b.debug.total(), DEFAULT_COUNTERS.total - default_before[0],
        debug.default.total() - default_before[1])
expect_a = 2 if p > 1 else 0     # checked calls (the check is skipped at p = 1)
record("instance_a_counts_and_checks_alone", leak == (0, 0, 0, 0) and a.debug.total() == expect_a
       and (a.counters.total > 0) == (p > 1) and not b.debug.on, f"leak {leak}, a checked {a.debug.total()}")
a_bytes = a.counters.total
b.allreduce(x)
record("instance_b_counts_alone", a.counters.total == a_bytes and (b.counters.total > 0) == (p > 1)
       and b.debug.total() == 0 and a.debug.total() == expect_a)
module_allreduce(comm, x)
record("module_api_counts_in_defaults_only", a.counters.total == a_bytes
       and DEFAULT_COUNTERS.total - default_before[0] == (2 * (p - 1) * x.nbytes // p) * 2,
       DEFAULT_COUNTERS.total - default_before[0])
with a.uncounted():
    a.allreduce(np.ones(1000))
record("uncounted", a.counters.total == a_bytes)

# ---- 4. control exchange, bcast, allgather_sum ------------------------------------------
got = a.control_exchange(ControlValues(loss=rank + 0.5, count=10.0, stop=float(rank == p - 1), nan=0.0))
record("control_exchange_named_fields", got == ControlValues(p * p / 2, 10.0 * p, 1.0, 0.0) and
       CONTROL.offset("nan") == 3, got)
buf = np.arange(7, dtype=np.float32) * (rank + 1)
for impl in ("native", "tree", "chain") + (("shm",) if nodes == 1 else ()):
    c = buf.copy()
    a.bcast(c, root=p - 1, impl=impl)
    record(f"bcast_{impl}", np.array_equal(c, np.arange(7, dtype=np.float32) * p))
g = inputs(500, np.float32, rank)
codec = make_codec("fp16", 500)
out = np.empty(500, np.float32)
before = b.counters.total
b.allgather_sum(codec, g, out)
expect = np.zeros(500, np.float32)
for r in range(p):
    expect += inputs(500, np.float32, r).astype(np.float16).astype(np.float32)
record("allgather_sum", np.array_equal(out, expect) and same_everywhere(out)
       and b.counters.total - before == 2 * (p - 1) * 1000, b.counters.total - before)
for coll in (default, small, a, b):
    coll.release()
if rank == 0:
    sys.stdout.write(json.dumps({"p": p, "nodes": nodes, "results": results}) + "\n")
