"""Convergence of every training algorithm: objective vs epochs, bytes and wall time.

    python bench/convergence.py [--tasks convex,mlp] [--procs 4,8] [--algos sync,local_sgd,...]
                                [--out bench/results/convergence] [--data-dir DIR]

Tasks (data generated once with ``python -m mpidml.data synth`` into --data-dir):
  convex  L2 logistic regression on a sparse click-log style set (100k rows, 2^17 hashed
          features, Zipf popularity). f* from scipy L-BFGS on the full set (float64);
          target: f − f* ≤ 0.01 (f(0) − f*).
  mlp     MLP 32-64-64-10 on a 10-class set (240k rows, 32 features) from a random tanh
          teacher network at temperature 0.05 (Bayes accuracy about 0.93, a linear model
          about 0.6); target: test accuracy within 0.01 of sync's best accuracy in the same
          epoch budget (15 epochs).

Every run is ``mpiexec -n P python -m mpidml.train ... --metrics RUN.jsonl`` (each under
``flock -x /work/cpu.lock`` when that file exists, so other jobs on the machine do not
run at the same time); the table reports, per (task, p, algorithm), the first epoch
that meets the target, the training seconds and the bytes (max over ranks of sent +
received) until then, and the final objective / accuracy. Plots per (task, p):
``mpidml.plot`` curves (objective vs epoch, vs time, accuracy, vs bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Algorithm variants: name -> extra flags. Batch, epochs and schedule are the task's for
# all; the lr is each variant's best from the task's grid (one lr for convex).
ALGOS = {
    "sync": ["--algo", "sync"],
    "local_sgd_t16": ["--algo", "local_sgd", "--tau", "16"],
    "local_sgd_t4": ["--algo", "local_sgd", "--tau", "4"],
    "post_local_t16": ["--algo", "local_sgd", "--tau", "16", "--local-after", "100"],
    "easgd_t16": ["--algo", "easgd", "--tau", "16"],
    "eamsgd_t16": ["--algo", "eamsgd", "--tau", "16"],
    "easgd_async_t16": ["--algo", "easgd_async", "--tau", "16"],
    "gossip_ring": ["--algo", "gossip", "--topology", "ring"],
    "gossip_exp": ["--algo", "gossip", "--topology", "exponential"],
    "pushsum": ["--algo", "pushsum"],
    "choco_topk10": ["--algo", "choco", "--compress", "topk", "--topk-ratio", "0.1", "--choco-gamma", "0.2"],
    "sync_topk1": ["--algo", "sync", "--compress", "topk", "--topk-ratio", "0.01"],
    "sync_qsgd": ["--algo", "sync", "--compress", "qsgd"],
}

TASKS = {
    "convex": {"model": ["--model", "logreg", "--l2", "1e-4", "--batch-size", "1024",
                         "--epochs", "12", "--lr-schedule", "cosine"], "lrs": [4.0]},
    # The MLP is sensitive to the lr, and differently so per algorithm (local steps on 1/p of
    # the batch are noisier): every variant runs on the grid and is shown at its best lr.
    "mlp": {"model": ["--model", "mlp", "--hidden", "64,64", "--l2", "1e-5",
                      "--batch-size", "256", "--epochs", "15", "--lr-schedule", "cosine"],
            "lrs": [0.05, 0.1, 0.2]},
}


def task_flags(task: str, epochs: int | None = None, lr: float | None = None) -> list[str]:
    """The task's training flags with ``--epochs`` (default: the task's) and ``--lr`` (default:
    the first of its grid). The other benchmarks use the convex task through this."""
    flags = list(TASKS[task]["model"])
    if epochs is not None:
        flags[flags.index("--epochs") + 1] = str(epochs)
    return [*flags, "--lr", f"{TASKS[task]['lrs'][0] if lr is None else lr:g}"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def make_data(data_dir: str) -> dict:
    os.makedirs(data_dir, exist_ok=True)
    py = sys.executable
    files = {
        "convex": ("click.h5", "click-test.h5", ["clicklog", "-n", "100000", "--d", "131072", "--seed", "1"]),
        "mlp": ("multi32.h5", "multi32-test.h5", ["multiclass", "-n", "240000", "--d", "32", "-k", "10",
                                                  "--temperature", "0.05", "--seed", "2"]),
    }
    out = {}
    for task, (train, test, args) in files.items():
        tr, te = os.path.join(data_dir, train), os.path.join(data_dir, test)
        if not os.path.exists(tr):
            sh([py, "-m", "mpidml.data", "synth", *args[:1], tr, *args[1:]])
        if not os.path.exists(te):
            n = str(int(args[2]) // 5)
            sh([py, "-m", "mpidml.data", "synth", *args[:1], te, "-n", n, *args[3:], "--stream", "1"])
        out[task] = (tr, te)
    return out


def f_star_logreg(path: str, l2: float) -> float:
    """min over (w, b) of mean(softplus(z) − y z) + l2/2 ‖w‖², z = X w + b (scipy L-BFGS, float64)."""
    import h5py
    import scipy.sparse as sp
    from scipy.optimize import minimize

    with h5py.File(path, "r") as f:
        g = f["X"]
        X = sp.csr_matrix((g["data"][()].astype(np.float64), g["indices"][()], g["indptr"][()]),
                          shape=tuple(g.attrs["shape"]))
        y = f["y"][()].astype(np.float64)
    n = X.shape[0]

    def fg(p):
        w, b = p[:-1], p[-1]
        z = X @ w + b
        r = (0.5 * (1 + np.tanh(0.5 * z)) - y) / n
        return (np.mean(np.logaddexp(0, z) - y * z) + 0.5 * l2 * w @ w,
                np.concatenate([X.T @ r + l2 * w, [r.sum()]]))

    res = minimize(fg, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-9, "ftol": 0.0, "maxiter": 20000})
    gnorm = float(np.linalg.norm(fg(res.x)[1]))
    print(f"f* = {res.fun:.8f} (L-BFGS, |grad| {gnorm:.1e}, {res.nit} iterations)", flush=True)
    return float(res.fun)


def train_cmd(p: int, data: tuple, metrics: str, *flags: str) -> list[str]:
    """``mpiexec -n p python -m mpidml.train`` on (train, test) writing ``metrics``, quiet;
    under ``flock -x /work/cpu.lock`` when that file exists (no other job runs meanwhile)."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-n", str(p), sys.executable, "-m", "mpidml.train", "--data", data[0], "--test", data[1],
           *flags, "--metrics", metrics, "-q", "--progress", "none"]
    return ["flock", "-x", "/work/cpu.lock", *cmd] if os.path.exists("/work/cpu.lock") else cmd


def metrics_path(out: str, task: str, p: int, algo: str, lr: float) -> str:
    grid = len(TASKS[task]["lrs"]) > 1
    return os.path.join(out, f"{task}-p{p}-{algo}" + (f"-lr{lr:g}" if grid else "") + ".jsonl")


def run(p: int, task: str, algo: str, lr: float, data: tuple, out: str, seed: int) -> str:
    metrics = metrics_path(out, task, p, algo, lr)
    cmd = train_cmd(p, data, metrics, *task_flags(task, lr=lr), *ALGOS[algo], "--seed", str(seed))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, text=True, capture_output=True, timeout=1800)
    if res.returncode:
        print(f"  {task} p={p} {algo} lr {lr:g}: FAILED rc {res.returncode}\n{res.stdout}{res.stderr}", flush=True)
        return ""
    print(f"  {task} p={p} {algo} lr {lr:g}: {time.perf_counter() - t0:.1f} s wall; "
          f"{res.stdout.strip().splitlines()[-1]}", flush=True)
    return metrics


def load(path: str) -> tuple[dict, list[dict], dict]:
    recs = [json.loads(line) for line in open(path)]
    return recs[0], [r for r in recs if r["type"] == "epoch"], recs[-1]


def save_table(out: str, text: str, rows) -> None:
    """Write a benchmark's ``table.md`` (and print it) and ``table.json`` into ``out``."""
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(out, "table.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    print(text)


def to_target(epochs: list[dict], ok) -> dict | None:
    for e in epochs:
        if ok(e):
            return e
    return None


def best_run(by_lr: dict, ok, task: str):
    """The lr whose run meets the target in the fewest epochs (then seconds); when none
    does, the best final objective (convex) or accuracy (mlp).
    Returns (lr, path, loaded run, epoch record at the target or None)."""
    runs = {lr: load(path) for lr, path in by_lr.items()}
    hits = {lr: to_target(run_[1], ok) for lr, run_ in runs.items()}

    def key(lr):
        hit, summ = hits[lr], runs[lr][2]
        if hit:
            return (0, hit["epoch"], hit["train_seconds"])
        return (1, summ["objective"] if task == "convex" else -(summ["test_accuracy"] or 0), 0)
    lr = min(runs, key=key)
    return lr, by_lr[lr], runs[lr], hits[lr]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="convex,mlp")
    ap.add_argument("--procs", default="4,8")
    ap.add_argument("--algos", default=",".join(ALGOS))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "convergence"))
    ap.add_argument("--data-dir", default=os.path.join(ROOT, ".cache-bench"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="analyse existing metrics files, do not re-run")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data = make_data(args.data_dir)
    tasks = args.tasks.split(",")
    procs = [int(p) for p in args.procs.split(",")]
    algos = args.algos.split(",")
    fstar = None
    if "convex" in tasks:
        l2 = float(TASKS["convex"]["model"][TASKS["convex"]["model"].index("--l2") + 1])
        fstar = f_star_logreg(data["convex"][0], l2)
    rows = []
    for task in tasks:
        for p in procs:
            grid = {}   # algo -> {lr: metrics path}
            for algo in algos:
                for lr in TASKS[task]["lrs"]:
                    path = metrics_path(args.out, task, p, algo, lr)
                    if not (args.reuse and os.path.exists(path)):
                        path = run(p, task, algo, lr, data[task], args.out, args.seed)
                    if path:
                        grid.setdefault(algo, {})[lr] = path
            if not grid:
                continue
            if task == "convex":
                f0 = load(next(iter(next(iter(grid.values())).values())))[2]["objective_initial"]
                target = fstar + 0.01 * (f0 - fstar)
                ok = lambda e, target=target: e["objective"] <= target  # noqa: E731
                what = f"f - f* <= 0.01 (f0 - f*): objective <= {target:.5f} (f* {fstar:.5f}, f0 {f0:.5f})"
            else:
                best = max((e["test_accuracy"] for pth in grid.get("sync", {}).values() for e in load(pth)[1]),
                           default=None)
                target = (best - 0.01) if best is not None else 1.0
                ok = lambda e, target=target: (e["test_accuracy"] or 0) >= target  # noqa: E731
                what = f"test accuracy >= {target:.4f} (sync's best {best:.4f} - 0.01)"
            paths = {}
            for algo, by_lr in grid.items():
                lr, path, (hdr, epochs, summ), hit = best_run(by_lr, ok, task)
                paths[algo] = path
                rows.append({"task": task, "p": p, "algo": algo, "lr": lr,
                             "lrs_tried": sorted(by_lr), "target": what,
                             "epoch_to_target": hit["epoch"] if hit else None,
                             "seconds_to_target": hit["train_seconds"] if hit else None,
                             "bytes_to_target": hit["bytes_communicated"] if hit else None,
                             "final_objective": summ["objective"], "final_accuracy": summ["test_accuracy"],
                             "train_seconds": summ["train_seconds"], "bytes": summ["bytes_communicated"]})
            from mpidml.plot import plot_runs, read_run

            plot_runs([dict(read_run(paths[a]), label=a) for a in paths],
                      os.path.join(args.out, f"{task}-p{p}.png"), title=f"{task}, p = {p}: {what}")
    lines = ["| task | p | algorithm | lr (best of) | epochs to target | s to target | MB to target | "
             "sync MB ÷ this | final objective | final accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        sync = next((s for s in rows if s["task"] == r["task"] and s["p"] == r["p"] and s["algo"] == "sync"), None)
        ratio = ""
        if sync and sync["bytes_to_target"] and r["bytes_to_target"]:
            ratio = f"{sync['bytes_to_target'] / r['bytes_to_target']:.1f}"
        fmt = lambda v, f: "not reached" if v is None else f.format(v)  # noqa: E731
        lrs = f"{r['lr']:g}" + (f" ({', '.join(f'{v:g}' for v in r['lrs_tried'])})" if len(r["lrs_tried"]) > 1 else "")
        lines.append(f"| {r['task']} | {r['p']} | {r['algo']} | {lrs} | {fmt(r['epoch_to_target'], '{}')} | "
                     f"{fmt(r['seconds_to_target'], '{:.2f}')} | "
                     f"{fmt(None if r['bytes_to_target'] is None else r['bytes_to_target'] / 1e6, '{:.1f}')} | "
                     f"{ratio} | {r['final_objective']:.5f} | {r['final_accuracy']:.4f} |")
    targets = sorted({(r["task"], r["target"]) for r in rows})
    text = "\n".join(lines) + "\n\nTargets:\n" + "\n".join(f"- {t}: {w}" for t, w in targets) + "\n"
    save_table(args.out, text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
