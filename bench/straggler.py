"""A straggler vs synchronous and asynchronous algorithms (issue 9 / 8).

    python bench/straggler.py [--p 4] [--slow 0.02] [--epochs 4] [--out bench/results/straggler]

Trains the convex task of bench/convergence.py (sparse click-log logistic regression)
with each algorithm twice at the same p: without a fault, and with rank 1 sleeping
``--slow`` seconds at every step (``--inject-fault slow:1:SEC``). Synchronous algorithms
(sync, gossip, synchronous EASGD) wait for the straggler every step or every τ steps;
asynchronous EASGD lets the other workers go on (its epoch ends when the workers
together have seen n samples). Note: easgd_async uses one of the p ranks as the
centre, so it has p − 1 workers. Reports training seconds, slowdown, final objective,
and the samples each rank contributed per epoch is implicit in the centre's count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convergence import HERE, ROOT, load, make_data, save_table, task_flags, train_cmd  # noqa: E402

ALGOS = {
    "sync": ["--algo", "sync"],
    "gossip_ring": ["--algo", "gossip", "--topology", "ring"],
    "easgd_t4": ["--algo", "easgd", "--tau", "4"],
    "easgd_async_t4": ["--algo", "easgd_async", "--tau", "4"],
}


def main(argv=None) -> int:
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--slow", type=float, default=0.02)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "straggler"))
    ap.add_argument("--data-dir", default=os.path.join(ROOT, ".cache-bench"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    train, test = make_data(args.data_dir)["convex"]
    model = task_flags("convex", epochs=args.epochs)
    rows = []
    for algo, flags in ALGOS.items():
        res = {}
        for fault in ("none", f"slow:1:{args.slow}"):
            metrics = os.path.join(args.out, f"{algo}-{'straggler' if fault != 'none' else 'clean'}.jsonl")
            cmd = train_cmd(args.p, (train, test), metrics, *model, *flags,
                            *(["--inject-fault", fault] if fault != "none" else []))
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
            res[fault] = load(metrics)[2]
        clean, slow = res["none"], res[f"slow:1:{args.slow}"]
        rows.append({"algo": algo, "clean_seconds": clean["train_seconds"], "straggler_seconds": slow["train_seconds"],
                     "slowdown": slow["train_seconds"] / clean["train_seconds"],
                     "clean_objective": clean["objective"], "straggler_objective": slow["objective"]})
        print(json.dumps(rows[-1]), flush=True)
    lines = [f"Straggler: rank 1 sleeps {args.slow * 1e3:.0f} ms every step; p = {args.p}; {args.epochs} epochs of "
             f"the convex task; `python bench/straggler.py --p {args.p} --slow {args.slow} --epochs {args.epochs}`", "",
             "| algorithm | train s, no straggler | train s, straggler | slowdown | objective, no straggler | "
             "objective, straggler |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['algo']} | {r['clean_seconds']:.2f} | {r['straggler_seconds']:.2f} | {r['slowdown']:.1f}x | "
              f"{r['clean_objective']:.5f} | {r['straggler_objective']:.5f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    save_table(args.out, text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
