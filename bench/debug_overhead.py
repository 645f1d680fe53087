"""Cost of the collective debug mode (mpidml.comm.debug), disabled and enabled.

    mpiexec -n 2 python bench/debug_overhead.py

Disabled, an entry point pays one test of a module attribute; that is timed in isolation
(a function with the test vs one without, timeit, one process), because it is far below
the run-to-run noise of a real allreduce. Then select.allreduce / ring_allreduce are
timed with the mode off and on (the signature allgather), alternating blocks of calls,
median of per-block means.
"""

import statistics
import sys
import time
import timeit

import numpy as np
from mpi4py import MPI

from mpidml.comm import debug as _debug
from mpidml.comm import select
from mpidml.comm.ring import ring_allreduce

comm = MPI.COMM_WORLD
p, rank = comm.Get_size(), comm.Get_rank()


def with_test(x):
    if _debug.on and _debug.outermost():
        return None
    return x


def without_test(x):
    return x


_debug.disable()
n = 2_000_000
t_with = min(timeit.repeat(lambda: with_test(1), number=n, repeat=5)) / n
t_without = min(timeit.repeat(lambda: without_test(1), number=n, repeat=5)) / n

cases = [("select.allreduce native", 8, lambda b: select.allreduce(comm, b, "avg", impl="native")),
         ("select.allreduce auto", 1 << 16, lambda b: select.allreduce(comm, b, "avg")),
         ("ring_allreduce", 1030, lambda b: ring_allreduce(comm, b, "avg")),
         ("ring_allreduce", 1 << 18, lambda b: ring_allreduce(comm, b, "avg"))]
rows = []
for name, count, fn in cases:
    buf = np.ones(count, np.float32)
    iters = 200 if count < 100_000 else 20
    samples = {False: [], True: []}
    for _block in range(10):
        for mode in (False, True):
            (_debug.enable if mode else _debug.disable)()
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn(buf)
            samples[mode].append((time.perf_counter() - t0) / iters)
    _debug.disable()
    off = comm.allreduce(statistics.median(samples[False]), op=MPI.MAX)
    on = comm.allreduce(statistics.median(samples[True]), op=MPI.MAX)
    rows.append((name, count, off, on))

if rank == 0:
    out = sys.stdout
    out.write(f"# mpidml collective debug mode, {p} ranks (max over ranks of median per-call time)\n")
    out.write(f"# disabled check alone: {1e9 * (t_with - t_without):.1f} ns per call "
              f"(function with the test {1e9 * t_with:.1f} ns, without {1e9 * t_without:.1f} ns)\n")
    out.write(f"{'collective':<26}{'count':>9}{'bytes':>10}{'off us':>10}{'on us':>10}{'on-off us':>11}\n")
    for name, count, off, on in rows:
        out.write(f"{name:<26}{count:>9}{4 * count:>10}{1e6 * off:>10.2f}{1e6 * on:>10.2f}{1e6 * (on - off):>11.2f}\n")
