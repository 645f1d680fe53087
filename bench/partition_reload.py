"""Per-epoch cost of ``--partition shuffle|sample``: reading the epoch's rows from disk.

    mpiexec -n 2 python bench/partition_reload.py [--data PATH] [--epochs 3]

Default data: the embedded training set (200000 x 100 float32, 80 MB), generated into
the cache if missing. Each rank loads its contiguous shard as training does (timed),
then reads its rows for ``--epochs`` epochs per partition (``EpochReadRows.read``, what
``epoch()`` does before the first step); printed: max over ranks of the median epoch.
Page cache warm after the first read.
"""

import argparse
import statistics
import sys
import time

from mpi4py import MPI

from mpidml.data.batches import EpochReadRows
from mpidml.data.cache import ensure_default_dataset
from mpidml.data.loader import load_shard_collective

ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--epochs", type=int, default=3)
args = ap.parse_args()
comm = MPI.COMM_WORLD
p, rank = comm.Get_size(), comm.Get_rank()
data = args.data or ensure_default_dataset(comm, log=lambda m: None)[0]
t0 = time.perf_counter()
shard = load_shard_collective(comm, data, "binary")
t_load = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
rows = []
for partition in ("shuffle", "sample"):
    src = EpochReadRows(shard, p, partition)
    times = []
    for epoch in range(1, args.epochs + 1):
        comm.Barrier()
        t0 = time.perf_counter()
        X, y, order = src.read(src.rows_for(0, epoch, rank))
        times.append(time.perf_counter() - t0)
        distinct = len(y)
        del X, y, order
    rows.append((partition, comm.allreduce(statistics.median(times), op=MPI.MAX),
                 comm.allreduce(distinct, op=MPI.MAX)))
if rank == 0:
    ds = shard.dataset
    out = sys.stdout
    out.write(f"# {data}: {ds.n} x {ds.d} {ds.dtype}{' CSR' if ds.sparse else ''}, {p} rank(s); "
              f"contiguous shard load (once, with validation and label scan) {t_load:.3f} s\n")
    out.write(f"{'partition':<10}{'rows/rank':>10}{'distinct':>10}{'reload s/epoch':>16}\n")
    for partition, t, distinct in rows:
        out.write(f"{partition:<10}{shard.n:>10}{distinct:>10}{t:>16.3f}\n")
