"""Peak RSS per rank of out-of-core training against the bound baseline + 1.2 x budget.

    python bench/stream_rss.py make DATA_DIR --gb 2.7            # once: dense float32 shards
    flock -x /work/cpu.lock mpiexec -n P python bench/stream_rss.py run DATA_DIR --budget 256M

``run`` measures on every rank: the baseline (peak RSS after importing everything and
compiling/loading the kernels, before any data: interpreter + libraries), then trains
one epoch of logistic regression with ``--memory-budget`` (validation pass, objective
passes and the epoch: every byte of the shard read 4 times) with prefetching on, off or
auto (one setting per process, so each peak is its own), and reports the peak RSS
(``ru_maxrss``; h5py's chunk cache and every temporary included) and the epoch time.
Rank 0 prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def rss_now_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def make(args) -> None:
    import numpy as np

    from mpidml.data.synth import binary_dense_blocks, write_blocks

    d = args.d
    rows = int(args.gb * 1e9 / (d * 4 + 4))
    t0 = time.perf_counter()
    write_blocks(args.data, binary_dense_blocks(rows, d, seed=args.seed, block_rows=65536), rows, d,
                 np.float32, np.float32, shards=args.shards)
    print(f"wrote {args.data}: {rows} x {d} float32 in {args.shards} shards "
          f"({rows * (d * 4 + 4) / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")


def run(args) -> None:
    import numpy as np
    from mpi4py import MPI

    from mpidml.data.stream import parse_memory_budget
    from mpidml.models import LogReg
    from mpidml.train import TrainConfig, train

    comm = MPI.COMM_WORLD.Dup()
    rank, size = comm.Get_rank(), comm.Get_size()
    budget = parse_memory_budget(args.budget)
    # kernels compiled/loaded before measuring the baseline (rank 0 first: numba cache)
    for turn in (0, 1):
        if (rank == 0) == (turn == 0):
            m = LogReg(4, dtype=np.float32)
            X, y = np.zeros((2, 4), np.float32), np.zeros(2, np.float32)
            p, g = m.init_params(), np.zeros(5, np.float32)
            m.loss_grad_sum(X, y, np.arange(2), p, g)
            m.correct(X, y, np.arange(2), p)
        comm.Barrier()
    baseline = rss_peak_bytes()
    records = []
    import mpidml.data.stream as stream_mod

    stream_mod.DEFAULT_PREFETCH = {"on": True, "off": False, "auto": None}[args.prefetch]
    prefetch = args.prefetch if args.prefetch != "auto" else f"auto:{stream_mod.prefetch_pays_off(comm)}"
    t0 = time.perf_counter()
    s = train(TrainConfig(data=args.data, epochs=1, batch_size=args.batch_size, lr=0.5, quiet=True,
                          memory_budget=budget), comm)
    wall = time.perf_counter() - t0
    records.append({"prefetch": prefetch, "train_seconds": s["train_seconds"],
                    "wall_seconds": wall, "objective": s["objective"],
                    "peak_rss": rss_peak_bytes(), "rss_now": rss_now_bytes()})
    per_rank = comm.gather({"rank": rank, "baseline": baseline, "runs": records}, root=0)
    if rank == 0:
        from mpidml.data.layout import open_dataset

        ds = open_dataset(args.data)
        data_bytes = ds.n * (ds.d * ds.dtype.itemsize + ds.y_dtype.itemsize)
        bound = lambda b: b + 1.2 * budget  # noqa: E731
        print(f"data {args.data}: {ds.n} x {ds.d} {ds.dtype}, {data_bytes / 1e9:.2f} GB "
              f"= {data_bytes / budget:.1f} x budget {budget / 2**20:.0f} MiB; {size} rank(s), "
              f"{data_bytes / size / budget:.1f} x budget per rank")
        print(f"{'rank':>4} {'prefetch':>8} {'baseline MiB':>13} {'peak MiB':>9} {'bound MiB':>10} "
              f"{'peak-base':>10} {'ok':>3} {'epoch s':>8} {'wall s':>7}")
        ok = True
        for r in per_rank:
            for rec in r["runs"]:
                good = rec["peak_rss"] <= bound(r["baseline"])
                ok = ok and good
                print(f"{r['rank']:>4} {str(rec['prefetch']):>8} {r['baseline'] / 2**20:>13.0f} "
                      f"{rec['peak_rss'] / 2**20:>9.0f} {bound(r['baseline']) / 2**20:>10.0f} "
                      f"{(rec['peak_rss'] - r['baseline']) / budget:>9.2f}B {'yes' if good else 'NO':>3} "
                      f"{rec['train_seconds']:>8.2f} {rec['wall_seconds']:>7.2f}")
        print(json.dumps({"bench": "stream_rss", "size": size, "budget": budget, "data_bytes": data_bytes,
                          "all_within_bound": ok, "ranks": per_rank}))
    comm.Free()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the dense data set (float32, d features)")
    m.add_argument("data")
    m.add_argument("--gb", type=float, default=2.7)
    m.add_argument("--d", type=int, default=100)
    m.add_argument("--shards", type=int, default=4)
    m.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run", help="measure (under mpiexec)")
    r.add_argument("data")
    r.add_argument("--budget", default="256M")
    r.add_argument("--batch-size", type=int, default=8192)
    r.add_argument("--prefetch", choices=["on", "off", "auto"], default="auto")
    args = p.parse_args()
    make(args) if args.cmd == "make" else run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
