"""Bytes per rank of sync training with each --compress codec at p = 2, 4, 8, against sync's.

    flock -x /tmp/cpu.lock python bench/compression_bytes.py [--p 2,4,8] [--d 100,10000]
          [--before /work/main] [--out bench/results/compression_bytes.md]

One mpiexec launch per (p, d): ``--worker`` trains a tiny dense logreg set (n = 2048 rows,
d features, global batch 512: 4 steps) for one epoch with ``mpidml.fit`` for every codec
(none, fp16, topk, qsgd; default lr and optimizer) and prints the summaries' bytes
(``bytes_communicated``: the largest sent+received over ranks, training traffic only).
Bytes per step do not depend on n, so a tiny set measures them exactly. ``--before TREE``
also runs the worker with ``PYTHONPATH=TREE`` (e.g. a checkout of the code before
comm/compressed.py, which all-gathered every payload) for a "before" column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CODECS = ("none", "fp16", "topk", "qsgd")
N_ROWS, BATCH = 2048, 512


def worker(data: str) -> None:
    from mpi4py import MPI

    import mpidml

    rows = []
    for codec in CODECS:
        res = mpidml.fit("logreg", data, "sync", epochs=1, batch_size=BATCH, compress=codec, quiet=True)
        s = res.summary
        rows.append({"codec": codec, "bytes": s["bytes_communicated"], "steps": s["steps"],
                     "identical": s["params_identical"], "objective": s["objective"],
                     "topk_k": s.get("topk_k"), "topk_exchanges": s.get("topk_exchanges")})
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps({"p": MPI.COMM_WORLD.Get_size(), "rows": rows}), flush=True)


def mpiexec() -> str:
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else "mpiexec"


def measure(p: int, data: str, tree: str | None = None, timeout: float = 900) -> dict:
    """Run the worker at ``p`` ranks (``tree``: PYTHONPATH of the mpidml to measure)."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=tree or ROOT)
    cmd = [mpiexec(), "-n", str(p), sys.executable, os.path.abspath(__file__), "--worker", data]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"p={p} {data} (PYTHONPATH={tree or ROOT}) failed:\n{out.stdout[-2000:]}\n"
                         f"{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_data(directory: str, d: int) -> str:
    from mpidml.data.synth import make_binary_dense

    path = os.path.join(directory, f"d{d}.h5")
    make_binary_dense(path, N_ROWS, d, seed=2024)
    return path


def table(results: dict, before: dict) -> list[str]:
    lines = ["| d | p | codec | k | bytes/rank | bytes/step | × sync | before (allgather) | × sync before | "
             "top-k exchanges | replicas identical |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (d, p), got in sorted(results.items()):
        rows = {r["codec"]: r for r in got["rows"]}
        old = {r["codec"]: r for r in before[(d, p)]["rows"]} if (d, p) in before else {}
        sync = rows["none"]["bytes"]
        for codec in CODECS:
            r = rows[codec]
            b = old.get(codec)
            ex = ", ".join(f"{k} {v}" for k, v in (r["topk_exchanges"] or {}).items()) or "-"
            was = f"{b['bytes']:,}" if b else "-"
            was_x = f"{b['bytes'] / old['none']['bytes']:.3f}" if b else "-"
            lines.append(f"| {d} | {p} | {codec} | {r['topk_k'] or '-'} | {r['bytes']:,} | "
                         f"{r['bytes'] // r['steps']:,} | "
                         f"{r['bytes'] / sync:.3f} | {was} | {was_x} | {ex} | {'yes' if r['identical'] else 'NO'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", metavar="DATA", help=argparse.SUPPRESS)
    ap.add_argument("--p", default="2,4,8")
    ap.add_argument("--d", default="100,10000")
    ap.add_argument("--before", metavar="TREE", help="also measure the mpidml at TREE (PYTHONPATH)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "compression_bytes.md"))
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    ps = [int(x) for x in args.p.split(",")]
    ds = [int(x) for x in args.d.split(",")]
    results, before = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for d in ds:
            data = make_data(tmp, d)
            for p in ps:
                results[(d, p)] = measure(p, data)
                if args.before:
                    before[(d, p)] = measure(p, data, args.before)
                print(f"d={d} p={p} done", file=sys.stderr, flush=True)
    head = ["# Bytes per rank of compressed sync training (bench/compression_bytes.py)", "",
            f"`python bench/compression_bytes.py --p {args.p} --d {args.d}"
            + (f" --before {args.before}" if args.before else "") + "` under `flock -x /tmp/cpu.lock`; "
            f"{platform.node()}, Python {platform.python_version()}. Dense logreg, {N_ROWS} rows × d, global "
            f"batch {BATCH}, one epoch ({N_ROWS // BATCH} steps), default lr/optimizer (momentum 0.9: top-k "
            "applies it before compression, k ≥ 8). bytes/rank: the summary's `bytes_communicated` (max over "
            "ranks of sent + received, training only). \"before\": the same worker on the tree that all-gathered "
            "every payload (`codecs.allgather_sum`).", ""]
    text = "\n".join(head + table(results, before)) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
        json.dump({f"d{d}_p{p}": v for (d, p), v in results.items()}
                  | {f"before_d{d}_p{p}": v for (d, p), v in before.items()}, fh, indent=1)
    print(text)


if __name__ == "__main__":
    main()
