#!/usr/bin/env python
"""Kernel benchmark: mpidml's numba kernels against numpy / scipy.sparse references.

    flock -x /work/cpu.lock python bench/kernels.py          # writes bench/results/kernels.{json,md}

Rules that keep the comparison from drifting (issue #5):
- BLAS (numpy's and scipy's OpenBLAS) pinned to 1 thread; every serial kernel runs on
  1 numba thread; ``prange`` variants are measured separately at 2 threads (the
  process starts numba's pool with 2 threads and sets 1 except around those cases).
- dense logistic reference exactly as the issue states: z = X @ w; p = 1/(1+exp(−z));
  g = X.T @ (p − y)/n + λw, with X 400,000 × 100 float32 (160 MB, far larger than cache).
- read bound: a numba single pass summing X (dense) or data + indices (CSR), in the
  same run; % of read bound = t_read / t_kernel.
- every timing is the median of ``--reps`` (≥ 7) repetitions, and the variants of a
  case (reference, kernel, read bound) are interleaved within each repetition.
- every timed kernel result is checked against its reference before timing.
- compile time is reported apart: first call in a fresh process with an empty numba
  cache (compile), with the cache filled (``cache=True`` load), and steady state.
"""

from __future__ import annotations

import os
import sys

THREADS_PARALLEL = 2
for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_k] = "1"
os.environ["NUMBA_NUM_THREADS"] = str(THREADS_PARALLEL)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from numba import njit, prange  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from mpidml.kernels.logreg import (  # noqa: E402
    logreg_loss_grad_csr,
    logreg_loss_grad_csr_parallel,
    logreg_loss_grad_dense,
    logreg_loss_grad_dense_parallel,
)
from mpidml.kernels.lsq import lsq_loss_grad_dense  # noqa: E402
from mpidml.kernels.softmax import softmax_loss_grad_dense  # noqa: E402
from mpidml.models import MLP, Softmax  # noqa: E402

LAM = 1e-4


# ------------------------------------------------------------------ read bounds
@njit(cache=True, nogil=True, fastmath=True)
def read_dense(X):
    """One pass summing every element of X (the memory-read bound)."""
    s = 0.0
    for i in range(X.shape[0]):
        acc = X.dtype.type(0)
        for j in range(X.shape[1]):
            acc += X[i, j]
        s += acc
    return s


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def read_dense_parallel(X):
    s = 0.0
    for i in prange(X.shape[0]):
        acc = X.dtype.type(0)
        for j in range(X.shape[1]):
            acc += X[i, j]
        s += acc
    return s


@njit(cache=True, nogil=True, fastmath=True)
def read_csr(data, indices, indptr):
    """One pass over data, indices and indptr (what a CSR matvec must read)."""
    s = 0.0
    k = 0
    for i in range(indptr.shape[0] - 1):
        acc = data.dtype.type(0)
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p]
            k += indices[p]
        s += acc
    return s + k


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def read_csr_parallel(data, indices, indptr):
    s = 0.0
    for i in prange(indptr.shape[0] - 1):
        acc = data.dtype.type(0)
        k = 0
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p]
            k += indices[p]
        s += acc + k
    return s


# ------------------------------------------------------------------ numpy references
def logreg_numpy(X, y, w):
    """The issue's reference, verbatim (w without bias; λ = 1e-4)."""
    n = X.shape[0]
    z = X @ w
    p = 1 / (1 + np.exp(-z))
    return X.T @ (p - y) / n + LAM * w


def logreg_scipy(Xs, y, w):
    n = Xs.shape[0]
    z = Xs @ w
    p = 1 / (1 + np.exp(-z))
    return Xs.T @ (p - y) / n + LAM * w


def lsq_numpy(X, y, w):
    n = X.shape[0]
    return X.T @ (X @ w - y) / n + LAM * w


def softmax_numpy(X, y, W):
    Z = X @ W
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(len(y)), y] -= 1
    return X.T @ P / len(y)


class NumpyMLP:
    """A plain numpy MLP step (gather, matmuls, ReLU, softmax, backward) as users write it."""

    def __init__(self, Ws, bs):
        self.Ws, self.bs = Ws, bs

    def step(self, X, y, rows):
        A = [X[rows]]
        for l, (W, b) in enumerate(zip(self.Ws, self.bs)):
            Z = A[-1] @ W + b
            A.append(np.maximum(Z, 0) if l < len(self.Ws) - 1 else Z)
        Z = A[-1]
        Z = Z - Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        s = P.sum(axis=1, keepdims=True)
        loss = float(np.sum(np.log(s[:, 0]) - Z[np.arange(len(rows)), y[rows]]))
        D = P / s
        D[np.arange(len(rows)), y[rows]] -= 1
        grads = []
        for l in range(len(self.Ws) - 1, -1, -1):
            grads.append((A[l].T @ D, D.sum(axis=0)))
            if l > 0:
                D = (D @ self.Ws[l].T) * (A[l] > 0)
        return loss, grads[::-1]


# ------------------------------------------------------------------ cases
def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Case:
    """One table row: a kernel, its reference and (optionally) a read bound, interleaved."""

    def __init__(self, kernel, shape, dtype, threads, bytes_read, variants, note=""):
        self.kernel, self.shape, self.dtype, self.threads = kernel, shape, dtype, threads
        self.bytes_read, self.variants, self.note = bytes_read, variants, note
        self.times = {name: [] for name in variants}

    def run_once(self):
        for name, fn in self.variants.items():
            if self.threads > 1 and name != "reference":
                numba.set_num_threads(self.threads)
            self.times[name].append(timed(fn))
            numba.set_num_threads(1)

    def summary(self, per=1):
        med = {k: float(np.median(v)) / per for k, v in self.times.items()}
        out = {"kernel": self.kernel, "shape": self.shape, "dtype": self.dtype, "threads": self.threads,
               "time_s": med["numba"], "reference_s": med["reference"],
               "speedup": med["reference"] / med["numba"], "note": self.note,
               "reps": len(self.times["numba"]), "all_times_s": self.times}
        if self.bytes_read:
            out["gb_per_s"] = self.bytes_read / med["numba"] / 1e9
        # the same ratios repetition by repetition (variants run side by side): their
        # spread shows how much the shared machine moved during the run
        paired = lambda a: [x / y for x, y in zip(self.times[a], self.times["numba"])]  # noqa: E731
        out["speedup_range"] = [min(paired("reference")), max(paired("reference"))]
        if "read" in med:
            out["read_bound_s"] = med["read"]
            out["pct_read_bound"] = 100.0 * med["read"] / med["numba"]
            out["pct_read_bound_range"] = [100.0 * v for v in (min(paired("read")), max(paired("read")))]
        return out


def check(name, got, ref, rtol):
    if not np.allclose(got, ref, rtol=rtol, atol=rtol * np.abs(ref).max()):
        raise SystemExit(f"{name}: kernel result differs from reference (max |diff| "
                         f"{np.abs(got - ref).max():.3g})")


def dense_logreg_cases(n, d, dtype, rng):
    X = rng.standard_normal((n, d), dtype=np.float32).astype(dtype, copy=False)
    y = (rng.random(n) < 0.5).astype(dtype)
    w = (rng.standard_normal(d + 1) * 0.1).astype(dtype)
    w[d] = 0  # the reference has no bias
    rows = np.arange(n, dtype=np.int64)
    grad = np.empty(d + 1, dtype)
    part = np.empty((THREADS_PARALLEL, d + 1), dtype)
    ref = logreg_numpy(X, y, w[:d])
    logreg_loss_grad_dense(X, y, rows, w, grad)
    check("logreg dense", grad[:d] / n + LAM * w[:d], ref, 1e-3 if dtype == np.float32 else 1e-9)
    numba.set_num_threads(THREADS_PARALLEL)
    logreg_loss_grad_dense_parallel(X, y, rows, w, grad, part)
    read_dense_parallel(X)
    numba.set_num_threads(1)
    check("logreg dense parallel", grad[:d] / n + LAM * w[:d], ref, 1e-3 if dtype == np.float32 else 1e-9)
    read_dense(X)
    shape, nb = f"{n}x{d}", X.nbytes
    ref_fn = lambda: logreg_numpy(X, y, w[:d])  # noqa: E731
    cases = [Case("logreg dense (fused loss+grad)", shape, np.dtype(dtype).name, 1, nb, {
        "reference": ref_fn,
        "numba": lambda: logreg_loss_grad_dense(X, y, rows, w, grad),
        "read": lambda: read_dense(X)}, "numpy: issue formula (gradient only)")]
    if dtype == np.float32:
        cases.append(Case("logreg dense prange", shape, np.dtype(dtype).name, THREADS_PARALLEL, nb, {
            "reference": ref_fn,
            "numba": lambda: logreg_loss_grad_dense_parallel(X, y, rows, w, grad, part),
            "read": lambda: read_dense_parallel(X)},
            "numpy at 1 BLAS thread; read bound at 2 threads"))
    return cases


def csr_logreg_cases(n, d, nnz_row, dtype, rng):
    nnz = n * nnz_row
    indptr = np.arange(0, nnz + 1, nnz_row, dtype=np.int64)
    indices = rng.integers(0, d, nnz).astype(np.int32)
    # sorted columns per row, as scipy writes them
    indices = np.sort(indices.reshape(n, nnz_row), axis=1).ravel()
    data = rng.standard_normal(nnz).astype(dtype)
    Xs = sp.csr_matrix((data, indices, indptr), shape=(n, d))
    Xs.sum_duplicates()
    data, indices, indptr = Xs.data, Xs.indices, Xs.indptr.astype(np.int64)
    y = (rng.random(n) < 0.5).astype(dtype)
    w = (rng.standard_normal(d + 1) * 0.1).astype(dtype)
    w[d] = 0
    rows = np.arange(n, dtype=np.int64)
    grad = np.empty(d + 1, dtype)
    part = np.empty((THREADS_PARALLEL, d + 1), dtype)
    ref = logreg_scipy(Xs, y, w[:d])
    tol = 1e-3 if dtype == np.float32 else 1e-9
    logreg_loss_grad_csr(data, indices, indptr, y, rows, w, grad)
    check("logreg csr", grad[:d] / n + LAM * w[:d], ref, tol)
    numba.set_num_threads(THREADS_PARALLEL)
    logreg_loss_grad_csr_parallel(data, indices, indptr, y, rows, w, grad, part)
    read_csr_parallel(data, indices, indptr)
    numba.set_num_threads(1)
    check("logreg csr parallel", grad[:d] / n + LAM * w[:d], ref, tol)
    read_csr(data, indices, indptr)
    shape = f"{n}x{d} nnz/row {nnz_row}"
    nb = data.nbytes + indices.nbytes + indptr.nbytes
    ref_fn = lambda: logreg_scipy(Xs, y, w[:d])  # noqa: E731
    cases = [Case("logreg CSR (fused loss+grad)", shape, np.dtype(dtype).name, 1, nb, {
        "reference": ref_fn,
        "numba": lambda: logreg_loss_grad_csr(data, indices, indptr, y, rows, w, grad),
        "read": lambda: read_csr(data, indices, indptr)}, "reference: scipy.sparse X @ w, X.T @ r")]
    if dtype == np.float32:
        cases.append(Case("logreg CSR prange", shape, np.dtype(dtype).name, THREADS_PARALLEL, nb, {
            "reference": ref_fn,
            "numba": lambda: logreg_loss_grad_csr_parallel(data, indices, indptr, y, rows, w, grad, part),
            "read": lambda: read_csr_parallel(data, indices, indptr)},
            "scipy at 1 thread; read bound at 2 threads"))
    return cases


def other_dense_cases(rng):
    n, d, K = 400_000, 100, 10
    X = rng.standard_normal((n, d), dtype=np.float32)
    yr = rng.standard_normal(n).astype(np.float32)
    w = (rng.standard_normal(d + 1) * 0.1).astype(np.float32)
    w[d] = 0
    rows = np.arange(n, dtype=np.int64)
    g = np.empty(d + 1, np.float32)
    lsq_loss_grad_dense(X, yr, rows, w, g)
    check("lsq", g[:d] / n + LAM * w[:d], lsq_numpy(X, yr, w[:d]), 1e-3)
    cases = [Case("lsq dense (fused loss+grad)", f"{n}x{d}", "float32", 1, X.nbytes, {
        "reference": lambda: lsq_numpy(X, yr, w[:d]),
        "numba": lambda: lsq_loss_grad_dense(X, yr, rows, w, g),
        "read": lambda: read_dense(X)}, "numpy: X.T @ (X @ w − y)/n + λw")]
    ns = 100_000
    Xs = X[:ns]
    yc = rng.integers(0, K, ns)
    W = np.zeros(d * K + K, np.float32)
    W[: d * K] = rng.standard_normal(d * K) * 0.1
    gs = np.empty_like(W)
    zk = np.empty(K)
    rows_s = rows[:ns]
    softmax_loss_grad_dense(Xs, yc, rows_s, W, gs, zk)
    check("softmax", gs[: d * K].reshape(d, K) / ns, softmax_numpy(Xs, yc, W[: d * K].reshape(d, K)), 1e-3)
    cases.append(Case("softmax dense K=10 (fused per-row kernel)", f"{ns}x{d}", "float32", 1, Xs.nbytes, {
        "reference": lambda: softmax_numpy(Xs, yc, W[: d * K].reshape(d, K)),
        "numba": lambda: softmax_loss_grad_dense(Xs, yc, rows_s, W, gs, zk),
        "read": lambda: read_dense(Xs)}, "numpy: X @ W, softmax, X.T @ P"))
    model = Softmax(d, K, np.float32, l2=0.0)
    model.loss_grad_sum(Xs, yc, rows_s, W, gs)
    check("softmax model", gs[: d * K].reshape(d, K) / ns, softmax_numpy(Xs, yc, W[: d * K].reshape(d, K)), 1e-3)
    cases.append(Case("softmax dense K=10 (Softmax model: BLAS chunks)", f"{ns}x{d}", "float32", 1, Xs.nbytes, {
        "reference": lambda: softmax_numpy(Xs, yc, W[: d * K].reshape(d, K)),
        "numba": lambda: model.loss_grad_sum(Xs, yc, rows_s, W, gs),
        "read": lambda: read_dense(Xs)}, "numpy: X @ W, softmax, X.T @ P"))
    return cases


class MLPCase(Case):
    def summary(self, per=1):
        return super().summary(per=self.steps)


def mlp_cases(rng, dtype, batches=(256, 16)):
    d, hidden, K, n = 784, (256, 256), 10, 8192
    X = rng.random((n, d), dtype=np.float32).astype(dtype, copy=False)
    y = rng.integers(0, K, n)
    model = MLP(d, K, hidden, dtype=dtype, l2=0.0, batch_capacity=256)
    params = model.init_params(seed=0)
    grad = np.empty_like(params)
    v = model.views(params)
    ref = NumpyMLP([v[f"W{i}"] for i in range(3)], [v[f"b{i}"] for i in range(3)])
    perm = rng.permutation(n).astype(np.int64)
    lo, gr = ref.step(X, y, perm[:256])
    model.loss_grad_sum(X, y, perm[:256], params, grad)
    flat = np.concatenate([a for pair in gr for a in (pair[0].ravel(), pair[1])])
    check("mlp", grad, flat, 1e-3 if dtype == np.float32 else 1e-9)
    cases = []
    for batch in batches:
        steps = max(10, 4096 // batch)
        batches_rows = [perm[(s * batch) % n: (s * batch) % n + batch] for s in range(steps)]

        def run_ref(b=batches_rows):
            for r in b:
                ref.step(X, y, r)

        def run_numba(b=batches_rows):
            for r in b:
                model.loss_grad_sum(X, y, r, params, grad)

        c = MLPCase(f"MLP {d}-256-256-10 fwd+bwd, batch {batch}", f"batch {batch}", np.dtype(dtype).name, 1,
                    batch * d * np.dtype(dtype).itemsize, {"reference": run_ref, "numba": run_numba},
                    f"per step; {steps} steps per repetition; BLAS sgemm/dgemm in both")
        c.steps = steps
        cases.append(c)
    return cases


# ------------------------------------------------------------------ compile time
def compile_probe() -> dict:
    """First-call times of every kernel on tiny inputs (in this fresh process)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8), dtype=np.float32)
    y = (rng.random(64) < 0.5).astype(np.float32)
    rows = np.arange(64, dtype=np.int64)
    Xs = sp.csr_matrix(X * (rng.random(X.shape) < 0.3))
    data, indices, indptr = Xs.data, Xs.indices, Xs.indptr.astype(np.int64)
    w = np.zeros(9, np.float32)
    g = np.empty(9, np.float32)
    part = np.empty((2, 9), np.float32)
    out = {}
    for name, fn in [
        ("logreg_loss_grad_dense", lambda: logreg_loss_grad_dense(X, y, rows, w, g)),
        ("logreg_loss_grad_dense_parallel", lambda: logreg_loss_grad_dense_parallel(X, y, rows, w, g, part)),
        ("logreg_loss_grad_csr", lambda: logreg_loss_grad_csr(data, indices, indptr, y, rows, w, g)),
        ("lsq_loss_grad_dense", lambda: lsq_loss_grad_dense(X, y, rows, w, g)),
        ("mlp (784-256-256-10) loss_grad", None),
    ]:
        if fn is None:
            m = MLP(8, 3, (16, 16), dtype=np.float32)
            p = m.init_params()
            yy = rng.integers(0, 3, 64)
            gg = np.empty_like(p)
            fn = lambda m=m, yy=yy, p=p, gg=gg: m.loss_grad_sum(X, yy, rows, p, gg)  # noqa: E731
        first = timed(fn)
        steady = float(np.median([timed(fn) for _ in range(5)]))
        out[name] = {"first_call_s": first, "steady_call_s": steady}
    return out


def compile_times() -> dict:
    """Run the probe twice in fresh processes sharing an empty NUMBA_CACHE_DIR:
    the first compiles (and writes the cache), the second loads it."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            res = subprocess.run([sys.executable, __file__, "--compile-probe"], env=env,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(res.stdout))
    return {name: {"compile_s": runs[0][name]["first_call_s"], "cache_load_s": runs[1][name]["first_call_s"],
                   "steady_s": runs[1][name]["steady_call_s"]} for name in runs[0]}


# ------------------------------------------------------------------ report
TARGETS = [
    ("logreg dense (fused loss+grad)", "float32", "speedup", 1.4, "≥ 1.4× numpy"),
    ("logreg dense (fused loss+grad)", "float32", "pct_read_bound", 75.0, "≥ 75 % of read bound"),
    ("logreg CSR (fused loss+grad)", "float32", "speedup", 1.5, "≥ 1.5× scipy.sparse"),
    ("MLP 784-256-256-10 fwd+bwd, batch 256", "float32", "speedup", 1.0, "≥ 1.0× numpy"),
    ("MLP 784-256-256-10 fwd+bwd, batch 16", "float32", "speedup", 2.0, "≥ 2.0× numpy"),
]


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "scipy": scipy.__version__,
            "platform": platform.platform(), "numba_threading_layer": numba.threading_layer()}


def fmt_time(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} µs"


def markdown(results, comp, cmd, mach, targets) -> str:
    lines = ["# Kernel benchmark", "", f"Command: `{cmd}`", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores (shared), Python {mach['python']}, "
             f"numpy {mach['numpy']}, numba {mach['numba']}, scipy {mach['scipy']}; BLAS 1 thread; "
             f"numba 1 thread except prange rows (2 threads, layer {mach['numba_threading_layer']}). "
             f"Median of {results[0]['reps']} interleaved repetitions.", "",
             "| kernel | shape | dtype | threads | time | GB/s | % of read bound | speed-up vs reference | reference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        gb = f"{r['gb_per_s']:.2f}" if "gb_per_s" in r else ""
        pct = f"{r['pct_read_bound']:.0f} %" if "pct_read_bound" in r else ""
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['dtype']} | {r['threads']} | {fmt_time(r['time_s'])} "
                     f"| {gb} | {pct} | {r['speedup']:.2f}× | {fmt_time(r['reference_s'])}: {r['note']} |")
    lines += ["", "## Targets", "",
              "| target | measured (from the medians) | per-repetition range | met |", "| --- | --- | --- | --- |"]
    for t in targets:
        lo, hi = t["range"]
        lines.append(f"| {t['kernel']} {t['dtype']}: {t['goal']} | {t['measured']:.2f} | {lo:.2f}–{hi:.2f} "
                     f"| {'yes' if t['met'] else 'NO'} |")
    lines += ["", "Why targets are missed, and what was tried: [kernels-analysis.md](kernels-analysis.md).",
              "", "## Compile time (first call in a fresh process; `cache=True`)", "",
              "| kernel | compile (empty cache) | load from cache | steady call (tiny input) |",
              "| --- | --- | --- | --- |"]
    for k, v in comp.items():
        lines.append(f"| {k} | {v['compile_s']:.2f} s | {v['cache_load_s'] * 1e3:.1f} ms | {fmt_time(v['steady_s'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=9, help="repetitions (median reported; >= 7)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for kernels.json / kernels.md")
    p.add_argument("--quick", action="store_true", help="small shapes (smoke test, not for the table)")
    p.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.compile_probe:
        numba.set_num_threads(1)
        print(json.dumps(compile_probe()))
        return 0
    if args.reps < 7 and not args.quick:
        p.error("--reps must be >= 7")
    numba.set_num_threads(1)
    rng = np.random.default_rng(2024)
    n_dense, n_csr = (20_000, 20_000) if args.quick else (400_000, 400_000)
    cases = []
    cases += dense_logreg_cases(n_dense, 100, np.float32, rng)
    cases += dense_logreg_cases(n_dense, 100, np.float64, rng)
    cases += csr_logreg_cases(n_csr, 20_000, 32, np.float32, rng)
    cases += csr_logreg_cases(n_csr, 20_000, 32, np.float64, rng)
    cases += other_dense_cases(rng) if not args.quick else []
    cases += mlp_cases(rng, np.float32)
    cases += mlp_cases(rng, np.float64, batches=(256,))
    for _ in range(args.reps):
        for c in cases:
            c.run_once()
    results = [c.summary() for c in cases]
    comp = compile_times()
    targets = []
    for kernel, dtype, key, goal, text in TARGETS:
        r = next(r for r in results if r["kernel"] == kernel and r["dtype"] == dtype)
        targets.append({"kernel": kernel, "dtype": dtype, "metric": key, "goal": text,
                        "measured": r[key], "range": r[key + "_range"], "met": r[key] >= goal})
    cmd = "flock -x /work/cpu.lock python bench/kernels.py" + "".join(f" {a}" for a in sys.argv[1:])
    mach = machine()
    md = markdown(results, comp, cmd, mach, targets)
    print(md)
    if not args.quick:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "kernels.json"), "w") as fh:
            json.dump({"command": cmd, "machine": mach, "results": results, "targets": targets,
                       "compile": comp}, fh, indent=1)
        with open(os.path.join(args.out, "kernels.md"), "w") as fh:
            fh.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
