"""Steps/s of training with the ring forced (before) and with the measured auto policy (after).

    flock -x /tmp/cpu.lock python bench/auto_training.py [--p 2] [--reps 3] [--epochs 2]
          [--out bench/results/auto_training.md]

Before ``Collectives`` (comm/collectives.py), every training step went through the ring
allreduce; now it takes ``impl="auto"`` (native MPI up to 64 KiB, the shm window above).
The "before" rows force the ring for the whole run with ``MPIDML_ALLREDUCE_IMPL=ring``
(same code otherwise). Two jobs: the default job (logreg on the embedded data set, fused
buffer 101 + 4 float32 = 420 bytes) and a small-buffer MLP (``--model mlp --hidden 16``,
1 633 + 4 float32). The runs are interleaved (ring, auto, ring, auto, …) so machine load
drifts hit both alike; steady state is the summary's ``train_seconds`` (the epochs'
step loops, without start-up, compilation and evaluation), start-up is reported apart.
Medians over ``--reps``; every run must end with replicas identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

JOBS = {
    "default (logreg d=100)": [],
    "mlp --hidden 16": ["--model", "mlp", "--hidden", "16"],
}
IMPLS = ("ring", "auto")


def mpiexec() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else "mpiexec"


def run(p: int, epochs: int, extra: list[str], impl: str, metrics: str) -> dict:
    env = dict(os.environ, MPIDML_ALLREDUCE_IMPL=impl, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [mpiexec(), "-n", str(p), sys.executable, "-m", "mpidml.train", "--epochs", str(epochs),
           "-q", "--metrics", metrics, *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    summary = [json.loads(line) for line in open(metrics)][-1]
    if not summary["params_identical"]:
        raise SystemExit(f"replicas differ after {' '.join(cmd)} with {impl}")
    summary["launch_seconds"] = time.perf_counter() - t0
    return summary


def micro(calls: int = 3000) -> None:
    """Under mpiexec: median µs per allreduce of the two jobs' fused buffers, ring vs auto,
    interleaved in blocks of 100 calls (rank 0 prints one JSON line)."""
    import numpy as np
    from mpi4py import MPI

    from mpidml.comm.collectives import Collectives

    comm = MPI.COMM_WORLD
    coll = Collectives(comm, impl="auto")
    out = {}
    for n in (101 + 4, 1633 + 4):
        buf = np.ones(n, dtype=np.float32)
        times = {"ring": [], "auto": []}
        for _ in range(calls // 100):
            for impl in times:
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(100):
                    coll.allreduce(buf, impl=impl)
                times[impl].append((time.perf_counter() - t0) / 100 * 1e6)
        out[n * 4] = {impl: statistics.median(v) for impl, v in times.items()} | {"auto_runs": coll.choose(n * 4)}
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def machine() -> list[str]:
    from mpi4py import MPI

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    import numpy

    return [f"- CPU: {cpu}, {os.cpu_count()} logical cores (shared with other jobs; timed runs hold /tmp/cpu.lock)",
            f"- MPI: {MPI.Get_library_version().splitlines()[0].strip()}; mpi4py {__import__('mpi4py').__version__}",
            f"- Python {platform.python_version()}, numpy {numpy.__version__}, {platform.platform()}",
            f"- load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])} "
            f"(other sessions share the 2 cores; their untimed work does not take the lock)",
            f"- commit {commit}{' (with uncommitted changes)' if dirty else ''}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "auto_training.md"))
    ap.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)   # the inner mpiexec program
    args = ap.parse_args(argv)
    if args.micro:
        micro()
        return 0
    if args.reps < 3:
        ap.error("--reps must be >= 3 (medians)")
    rows: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run(args.p, 1, [], "auto", os.path.join(tmp, "warm.jsonl"))   # data set generated, caches warm
        for rep in range(args.reps):
            for job, extra in JOBS.items():
                for impl in IMPLS:                                   # interleaved: ring, auto, ring, auto
                    s = run(args.p, args.epochs, extra, impl, os.path.join(tmp, f"{rep}.jsonl"))
                    rows.setdefault((job, impl), []).append(s)
                    print(f"rep {rep} {job:24s} {impl:5s} {s['steps'] / s['train_seconds']:8.1f} steps/s  "
                          f"start-up {s['startup_seconds']:.2f} s  calls {s['allreduce_calls']}", flush=True)
    lines = ["# Training steps/s: ring forced (before) vs measured auto policy (after)", "",
             f"p = {args.p}, {args.epochs} epochs per run, {args.reps} interleaved repetitions (ring, auto, …), "
             "medians. Steady state = steps / `train_seconds` (the step loops only); start-up = data load + "
             "kernel compile/load, reported apart. Every run ended with `replicas identical: yes`.", "",
             "Command:", "", "```",
             f"flock -x /tmp/cpu.lock python bench/auto_training.py --p {args.p} --reps {args.reps} "
             f"--epochs {args.epochs}", "```", "",
             "Each run: `MPIDML_ALLREDUCE_IMPL={ring|auto} mpiexec -n P python -m mpidml.train --epochs E -q "
             "--metrics M [job flags]`", "", "Machine:", "", *machine(), "",
             "| job | allreduce | algorithm run per step | steps/s (median) | min – max | speed-up | start-up s "
             "(median) | objective |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for job in JOBS:
        base = statistics.median(s["steps"] / s["train_seconds"] for s in rows[(job, "ring")])
        for impl in IMPLS:
            runs = rows[(job, impl)]
            rates = [s["steps"] / s["train_seconds"] for s in runs]
            med = statistics.median(rates)
            calls = runs[0]["allreduce_calls"]
            ran = max(calls, key=calls.get)
            lines.append(f"| {job} | {'ring (forced)' if impl == 'ring' else 'auto'} | {ran} | {med:,.1f} | "
                         f"{min(rates):,.1f} – {max(rates):,.1f} | {med / base:.2f}× | "
                         f"{statistics.median(s['startup_seconds'] for s in runs):.2f} | "
                         f"{runs[0]['objective']:.6f} |")
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    res = subprocess.run([mpiexec(), "-n", str(args.p), sys.executable, os.path.abspath(__file__), "--micro"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"micro benchmark failed:\n{res.stderr[-2000:]}")
    mic = json.loads(res.stdout.strip().splitlines()[-1])
    lines += ["", "The step's allreduce alone (same launch, 3000 calls each, ring and auto interleaved in "
              "blocks of 100, "
              "median µs per call of the block means):", "",
              "| fused buffer | ring µs | auto µs | auto runs | ring / auto |", "| ---: | ---: | ---: | --- | ---: |"]
    for nbytes, m in mic.items():
        ratio = m["ring"] / m["auto"]
        lines.append(f"| {nbytes} B | {m['ring']:.1f} | {m['auto']:.1f} | {m['auto_runs']} | {ratio:.2f}× |")
    lines += ["", "Reading it: the step loops of these jobs last 0.1–2 s, so the whole-run steps/s follow the "
              "machine's load (see the min – max spread and the load average); the allreduce-alone rows, many calls "
              "interleaved in one launch, are the steadier comparison.", "", "Per-run steps/s:", ""]
    for (job, impl), runs in rows.items():
        lines.append(f"- {job}, {impl}: " + ", ".join(f"{s['steps'] / s['train_seconds']:.1f}" for s in runs))
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
