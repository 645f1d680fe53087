"""Feature-parallel (model-parallel) logistic regression against data parallel (issue 10).

    python bench/feature_parallel.py [--procs 2,4] [--epochs 12] [--out bench/results/feature_parallel]

The convex task of bench/convergence.py: L2 logistic regression on the sparse click-log
set (100k rows × 2^17 features), the same flags for both algorithms. ``sync`` holds the
whole weight vector (and its gradient and momentum) on every rank; ``feature_parallel``
holds one column block per rank and sums partial margins with an allreduce per step.
The table gives, per p, the parameter + gradient + optimizer bytes per rank (the metrics
header's ``model_bytes_per_rank``, max over ranks), their ratio to sync's, the bytes
communicated, the seconds to the convergence benchmark's target and the final objective.
Runs hold ``flock -x /work/cpu.lock`` when that file exists.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from async_ps import F_STAR  # noqa: E402
from convergence import HERE, ROOT, load, make_data, save_table, task_flags, train_cmd  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", default="2,4")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "feature_parallel"))
    ap.add_argument("--data-dir", default=os.path.join(ROOT, ".cache-bench"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    train, test = make_data(args.data_dir)["convex"]
    model = task_flags("convex", epochs=args.epochs)
    target = F_STAR + 0.01 * (0.6931471805599453 - F_STAR)
    rows = []
    for p in [int(x) for x in args.procs.split(",")]:
        got = {}
        for algo in ("sync", "feature_parallel"):
            metrics = os.path.join(args.out, f"{algo}-p{p}.jsonl")
            cmd = train_cmd(p, (train, test), metrics, *model, "--algo", algo)
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
            header, epochs, summary = load(metrics)
            hit = next((e for e in epochs if e["objective"] <= target), None)
            got[algo] = {"p": p, "algo": algo, "model_bytes_per_rank": header["model_bytes_per_rank"],
                         "seconds_to_target": hit["train_seconds"] if hit else None,
                         "train_seconds": summary["train_seconds"], "objective": summary["objective"],
                         "bytes_communicated": summary["bytes_communicated"]}
        for r in got.values():
            r["memory_vs_sync"] = r["model_bytes_per_rank"] / got["sync"]["model_bytes_per_rank"]
            rows.append(r)
    lines = [f"Convex task (click-log 100k x 2^17), {args.epochs} epochs, target objective <= {target:.5f}; "
             f"2-core VM, p = 4 oversubscribed. `python bench/feature_parallel.py --procs {args.procs} "
             f"--epochs {args.epochs}`", "",
             "| p | algorithm | model bytes per rank | vs sync | MB communicated per rank | s to target | "
             "train s | final objective |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t = "not reached" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.2f}"
        lines.append(f"| {r['p']} | {r['algo']} | {r['model_bytes_per_rank']:,} | {r['memory_vs_sync']:.3f} | "
                     f"{r['bytes_communicated'] / 1e6:.1f} | {t} | {r['train_seconds']:.2f} | {r['objective']:.5f} |")
    save_table(args.out, "\n".join(lines) + "\n", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
