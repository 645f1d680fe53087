"""Per-rank read throughput of mpidml's loader vs plain h5py, dense and CSR.

    python bench/read_throughput.py make DIR                  # once: dense.h5 and csr.h5
    flock -x /work/cpu.lock mpiexec -n P python bench/read_throughput.py run DIR

Every rank, for each file, best of ``--repeat`` (page cache warm after the first):

* ``mpidml``     — ``load_shard(path, P, rank)``: its balanced row range, validated
  (finite values, CSR structure, labels), CSR ``indptr`` rebased;
* ``h5py-slice`` — plain h5py reads of the same rows (``X[a:b]``; CSR: ``indptr[a:b+1]``
  then the ``data``/``indices`` slices), no validation;
* ``h5py-full``  — plain h5py read of the whole file (``X[:]`` / every CSR array).

GB/s = bytes of features + labels delivered / seconds. Ranks start each measurement
together (barrier) so concurrent ranks share the disk and page cache as in training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def make(args) -> None:
    import numpy as np

    from mpidml.data.synth import binary_dense_blocks, clicklog_csr_blocks, write_blocks

    os.makedirs(args.dir, exist_ok=True)
    rows = int(args.gb * 1e9 / 404)
    write_blocks(os.path.join(args.dir, "dense.h5"), binary_dense_blocks(rows, 100, seed=1, block_rows=65536),
                 rows, 100, np.float32, np.float32)
    rows = int(args.gb * 1e9 / (20 * 8 + 12))
    write_blocks(os.path.join(args.dir, "csr.h5"), clicklog_csr_blocks(rows, 1 << 20, 20.0, seed=1, block_rows=65536),
                 rows, 1 << 20, np.float32, np.float32, sparse=True)
    print("wrote", args.dir)


def _nbytes(X, y) -> int:
    from mpidml.data.layout import CSRMatrix

    if isinstance(X, CSRMatrix):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + y.nbytes
    return X.nbytes + y.nbytes


def run(args) -> None:
    import h5py
    from mpi4py import MPI

    from mpidml.data.loader import load_shard
    from mpidml.data.partition import shard_rows

    comm = MPI.COMM_WORLD.Dup()
    rank, size = comm.Get_rank(), comm.Get_size()

    def plain_slice(path, full):
        with h5py.File(path, "r") as f:
            y = f["y"]
            n = y.shape[0]
            a, b = (0, n) if full else shard_rows(n, size, rank)
            if isinstance(f["X"], h5py.Group):
                g = f["X"]
                ptr = g["indptr"][a:b + 1]
                data, ind = g["data"][ptr[0]:ptr[-1]], g["indices"][ptr[0]:ptr[-1]]
                return data.nbytes + ind.nbytes + ptr.nbytes + y[a:b].nbytes
            X = f["X"][a:b]
            return X.nbytes + y[a:b].nbytes

    def timed(fn):
        best, nbytes = float("inf"), 0
        for _ in range(args.repeat):
            comm.Barrier()
            t0 = time.perf_counter()
            nbytes = fn()
            best = min(best, time.perf_counter() - t0)
        return nbytes, best

    rows = []
    for name in ("dense.h5", "csr.h5"):
        path = os.path.join(args.dir, name)
        for method, fn in (("mpidml", lambda path=path: _nbytes(*(lambda s: (s.X, s.y))(load_shard(path, size, rank)))),
                           ("h5py-slice", lambda path=path: plain_slice(path, False)),
                           ("h5py-full", lambda path=path: plain_slice(path, True))):
            nbytes, sec = timed(fn)
            rows.append({"file": name, "method": method, "rank": rank, "bytes": nbytes, "seconds": sec,
                         "GBps": nbytes / sec / 1e9})
    allrows = comm.gather(rows, root=0)
    if rank == 0:
        print(f"{'file':<9} {'method':<11} {'rank':>4} {'MB':>8} {'seconds':>8} {'GB/s':>6}   ({size} rank(s))")
        for r in sorted((r for part in allrows for r in part), key=lambda r: (r["file"], r["method"], r["rank"])):
            print(f"{r['file']:<9} {r['method']:<11} {r['rank']:>4} {r['bytes'] / 1e6:>8.0f} "
                  f"{r['seconds']:>8.3f} {r['GBps']:>6.2f}")
        print(json.dumps({"bench": "read_throughput", "size": size, "rows": [r for p in allrows for r in p]}))
    comm.Free()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--gb", type=float, default=0.6, help="approximate size of each file")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    make(args) if args.cmd == "make" else run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
