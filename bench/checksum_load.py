"""Cost of verifying content checksums at load: ``load_shard`` of the same ~1 GB data with
and without ``/checksums``, dense and CSR, per rank.

    python bench/checksum_load.py make DIR [--gb 1.0]       # once: {dense,csr}{,-sums}.h5
    flock -x /tmp/cpu.lock mpiexec -n P python bench/checksum_load.py run DIR

Each rank loads its balanced rows (``load_shard(path, P, rank)``: validated, and for the
``-sums`` files every SHA-256 block of its rows verified, plus the <= 2 blocks straddling
its range read and hashed again). Best of ``--repeat`` after one warm-up pass (page cache
warm); the process-wide "already verified" cache is cleared before every pass, so every
pass pays the full hash. MB/s = bytes of features + labels delivered / seconds.
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
    dense_rows = int(args.gb * 1e9 / 404)
    csr_rows = int(args.gb * 1e9 / (20 * 8 + 12))
    for sums in (False, True):
        tag = "-sums" if sums else ""
        write_blocks(os.path.join(args.dir, f"dense{tag}.h5"), binary_dense_blocks(dense_rows, 100, seed=1),
                     dense_rows, 100, np.float32, np.float32, checksums=sums)
        write_blocks(os.path.join(args.dir, f"csr{tag}.h5"), clicklog_csr_blocks(csr_rows, 1 << 20, 20.0, seed=1),
                     csr_rows, 1 << 20, np.float32, np.float32, sparse=True, checksums=sums)
    print("wrote", args.dir)


def run(args) -> None:
    from mpi4py import MPI

    from mpidml.data import checksum
    from mpidml.data.loader import load_shard

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    rows = []
    for kind in ("dense", "csr"):
        for tag in ("", "-sums"):
            path = os.path.join(args.dir, f"{kind}{tag}.h5")
            best, nbytes = float("inf"), 0
            for rep in range(args.repeat + 1):
                checksum._VERIFIED.clear()
                comm.Barrier()
                t0 = time.perf_counter()
                shard = load_shard(path, size, rank)
                dt = time.perf_counter() - t0
                X = shard.X
                nbytes = (X.nbytes if kind == "dense" else X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) \
                    + shard.y.nbytes
                del shard, X
                if rep:
                    best = min(best, dt)
            rows.append({"file": kind, "checksums": bool(tag), "rank": rank, "MB": nbytes / 1e6,
                         "seconds": best, "MB_per_s": nbytes / 1e6 / best})
    gathered = comm.gather(rows, root=0)
    if rank == 0:
        allrows = sorted((r for part in gathered for r in part), key=lambda r: (r["file"], r["rank"], r["checksums"]))
        print(f"# checksum_load: p={size}, best of {args.repeat} (page cache warm), per rank")
        print(f"{'file':>6} {'rank':>4} {'MB':>8} {'plain MB/s':>11} {'verified MB/s':>14} {'cost':>7}")
        for i in range(0, len(allrows), 2):
            plain, sums = allrows[i], allrows[i + 1]
            print(f"{plain['file']:>6} {plain['rank']:>4} {plain['MB']:8.0f} {plain['MB_per_s']:11.0f} "
                  f"{sums['MB_per_s']:14.0f} {sums['seconds'] / plain['seconds'] - 1:+7.0%}")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(allrows, fh, indent=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--gb", type=float, default=1.0)
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--json")
    args = p.parse_args(argv)
    make(args) if args.cmd == "make" else run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
