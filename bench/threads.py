"""Threads per rank: ``--threads auto`` against every rank using all cores (oversubscription).

    python bench/threads.py [--p 2,4] [--reps 3] [--epochs 2]

The MLP task of bench/convergence.py (240k rows, ``--epochs`` passes) under ``mpiexec -n P``
with ``--threads auto`` and with ``--threads C`` (C = the usable cores: what every rank did
before --threads existed, when numba and BLAS sized their pools to the node). Runs are
interleaved; the table shows the median training seconds and the median wall time of the
whole command (start-up and per-epoch evaluation included).
Writes bench/results/threads/table.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from convergence import ROOT, load, make_data, save_table, task_flags, train_cmd  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", default="2,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "threads"))
    ap.add_argument("--data-dir", default=os.path.join(ROOT, ".cache-bench"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    from mpidml.runtime.threads import usable_cores

    cores = usable_cores()
    train, test = make_data(args.data_dir)["mlp"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    results = {}
    for rep in range(args.reps):
        for p in [int(x) for x in args.p.split(",")]:
            for threads in ("auto", str(cores)):
                metrics = os.path.join(args.out, f"p{p}-{threads}.jsonl")
                cmd = train_cmd(p, (train, test), metrics, *task_flags("mlp", epochs=args.epochs),
                                "--threads", threads)
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=1800)
                wall = time.perf_counter() - t0
                summ = load(metrics)[2]
                results.setdefault((p, threads), []).append((summ["train_seconds"], wall))
                print(f"  rep {rep} p={p} --threads {threads}: train {summ['train_seconds']:.2f} s, "
                      f"wall {wall:.2f} s", flush=True)
    rows, lines = [], [f"Command: `python bench/threads.py --p {args.p} --reps {args.reps} --epochs {args.epochs}` "
                       f"({cores} usable cores; MLP 32-64-64-10 on 240k rows, {args.epochs} epochs; medians of "
                       f"{args.reps} interleaved runs)", "",
                       "| p | --threads | threads per rank | train s | wall s (whole command) "
                       "| train: oversubscribed ÷ auto |",
                       "| --- | --- | --- | --- | --- | --- |"]
    for (p, threads), vals in results.items():
        tr, wall = (float(np.median([v[i] for v in vals])) for i in (0, 1))
        auto_tr = float(np.median([v[0] for v in results[(p, "auto")]]))
        rows.append({"p": p, "threads": threads, "train_seconds": tr, "wall_seconds": wall, "runs": vals})
        per_rank = max(1, cores // p) if threads == "auto" else int(threads)
        ratio = "" if threads == "auto" else f"{tr / auto_tr:.1f}×"
        lines.append(f"| {p} | {threads} | {per_rank} | {tr:.2f} | {wall:.2f} | {ratio} |")
    save_table(args.out, "\n".join(lines) + "\n", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
