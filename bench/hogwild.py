#!/usr/bin/env python
"""Hogwild throughput inside one process: samples/s of one lock-free SGD pass over a
sparse click-log minibatch stream, T = 1 vs T = 2 numba threads (serial SGD for scale).

    flock -x /work/cpu.lock python bench/hogwild.py          # bench/results/hogwild.{txt,json}

Each repetition is one pass over all rows (a fresh permutation, per-row step 0.05 / 256
as a 256-row minibatch step would give) from the same starting weights; timings are the
median (min, max) of ``--reps`` repetitions, the variants interleaved within each
repetition; compile time is excluded (one warm-up pass each). The objective after the
timed passes is printed so a fast but wrong variant would show. On this machine the 2
cores are shared with other jobs, so T = 2 can at most double and usually does not.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from mpidml.data.layout import csr_concat  # noqa: E402
from mpidml.data.synth import clicklog_csr_blocks  # noqa: E402
from mpidml.kernels.hogwild import logreg_hogwild_csr, logreg_sgd_csr  # noqa: E402
from mpidml.kernels.logreg import logreg_loss_grad_csr  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--d", type=int, default=1 << 18)
    ap.add_argument("--nnz", type=float, default=20.0)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "hogwild"))
    args = ap.parse_args()
    blocks = list(clicklog_csr_blocks(args.rows, args.d, args.nnz, seed=1))
    X = csr_concat([b for b, _ in blocks])
    y = np.concatenate([yb for _, yb in blocks])
    step = 0.05 / 256
    w0 = np.zeros(args.d + 1, np.float32)
    variants = {"serial SGD": (logreg_sgd_csr, 1), "hogwild T=1": (logreg_hogwild_csr, 1),
                "hogwild T=2": (logreg_hogwild_csr, 2)}
    rng = np.random.default_rng(0)
    times = {k: [] for k in variants}
    final = {}
    for fn, t in variants.values():                 # warm-up: compile / cache load
        numba.set_num_threads(t)
        fn(X.data, X.indices, X.indptr, y, np.arange(1000, dtype=np.int64), w0.copy(), step)
    for _ in range(args.reps):
        perm = rng.permutation(X.n).astype(np.int64)
        for name, (fn, t) in variants.items():
            numba.set_num_threads(t)
            w = w0.copy()
            t0 = time.perf_counter()
            fn(X.data, X.indices, X.indptr, y, perm, w, step)
            times[name].append(time.perf_counter() - t0)
            final[name] = w
    grad = np.empty_like(w0)
    rows = np.arange(X.n, dtype=np.int64)
    lines = [f"# {X.n} rows x {args.d} cols CSR click-log, {X.nnz / X.n:.1f} nnz/row, float32; "
             f"one pass per repetition, median (min, max) of {args.reps}; numba {numba.__version__}; "
             f"{os.cpu_count()} cores (shared)",
             f"{'variant':<14}{'threads':>8}{'seconds':>10}{'min':>9}{'max':>9}{'samples/s':>14}"
             f"{'speed-up':>10}{'loss after pass':>17}"]
    base = float(np.median(times["hogwild T=1"]))
    out = {"rows": X.n, "d": args.d, "nnz_per_row": X.nnz / X.n, "reps": args.reps, "variants": []}
    for name, (_, t) in variants.items():
        ts = np.array(times[name])
        med = float(np.median(ts))
        loss = logreg_loss_grad_csr(X.data, X.indices, X.indptr, y, rows, final[name], grad) / X.n
        lines.append(f"{name:<14}{t:>8}{med:>10.3f}{ts.min():>9.3f}{ts.max():>9.3f}{X.n / med:>14,.0f}"
                     f"{base / med:>10.2f}{loss:>17.5f}")
        out["variants"].append({"name": name, "threads": t, "median_s": med, "min_s": float(ts.min()),
                                "max_s": float(ts.max()), "samples_per_s": X.n / med, "loss_after_pass": loss})
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".txt", "w") as fh:
        fh.write(text + "\n")
    with open(args.out + ".json", "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
