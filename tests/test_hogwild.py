"""Hogwild (``kernels/hogwild.py``, ``algos/hogwild.py``): with one thread the lock-free
pass IS serial per-row SGD (bit for bit) and matches a numpy loop to rounding; with two
threads it still converges near the reference optimum; ``--hogwild-threads`` as the
local step of local SGD trains end to end under mpiexec."""

import json

import numba
import numpy as np
import pytest

from mpidml.algos.hogwild import hogwild_step
from mpidml.data.layout import CSRMatrix
from mpidml.data.writer import write_csr
from mpidml.kernels.hogwild import logreg_hogwild_csr, logreg_sgd_csr
from mpidml.models import LogReg

from datasets import random_csr, sparse_binary
from mpirun import run_mpi
from reference import logreg_objective, logreg_optimum

L2 = 1e-4


def sgd_reference(dense, y, rows, w, step):
    """Per-row SGD in plain numpy, float64."""
    w = w.astype(np.float64).copy()
    for i in rows:
        z = dense[i] @ w[:-1] + w[-1]
        r = 1.0 / (1.0 + np.exp(-z)) - y[i]
        w[:-1] -= step * r * dense[i]
        w[-1] -= step * r
    return w


@pytest.fixture
def threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_thread_is_serial_sgd(dtype, threads):
    rng = np.random.default_rng(2)
    X, dense = random_csr(300, 25, rng, dtype, density=0.2)
    X = CSRMatrix(X.data * rng.standard_normal(X.data.size).astype(dtype) / 3, X.indices, X.indptr, X.shape)
    dense = X.toarray()
    y = (rng.random(300) < 0.4).astype(np.float32)
    rows = rng.permutation(300).astype(np.int64)
    w0 = (rng.standard_normal(26) * 0.1).astype(dtype)
    numba.set_num_threads(1)
    wh, ws = w0.copy(), w0.copy()
    lh = logreg_hogwild_csr(X.data, X.indices, X.indptr, y, rows, wh, 0.05)
    ls = logreg_sgd_csr(X.data, X.indices, X.indptr, y, rows, ws, 0.05)
    assert np.array_equal(wh, ws) and lh == ls
    tol = 1e-4 if dtype == np.float32 else 1e-12
    ref = sgd_reference(dense.astype(np.float64), y, rows, w0, 0.05)
    assert np.max(np.abs(wh - ref)) <= tol * max(1.0, np.abs(ref).max())


def sparse_set(n, d, seed):
    return sparse_binary(n, d, 0.03, seed)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_two_threads_converge_near_optimum(threads):
    X, dense, y = sparse_set(6000, 300, seed=4)
    w_star, f_star = logreg_optimum(dense, y, L2)
    f0 = logreg_objective(np.zeros(301), dense.astype(np.float64), y, L2)[0]
    numba.set_num_threads(2)
    model = LogReg(300, np.float32, L2)
    params = np.zeros(301, np.float32)
    grad = np.zeros_like(params)
    rng = np.random.default_rng(0)
    epochs, batch = 8, 200
    for e in range(epochs):
        perm = rng.permutation(6000).astype(np.int64)
        for s in range(0, 6000, batch):
            lr = 0.5 * 0.5 * (1 + np.cos(np.pi * (e * 6000 + s) / (epochs * 6000)))
            # the pass steps lr/m per row (m = 200 rows): peak per-row step 0.05
            hogwild_step(model, [(X, y, perm[s:s + batch])], params, lr * 20, grad)
    f = logreg_objective(params.astype(np.float64), dense.astype(np.float64), y, L2)[0]
    assert f - f_star <= 0.01 * (f0 - f_star), (f, f_star, f0)


def test_hogwild_local_sgd_end_to_end(tmp_path):
    X, dense, y = sparse_set(8000, 400, seed=6)
    path = str(tmp_path / "train.h5")
    write_csr(path, X, y)
    _, f_star = logreg_optimum(dense, y, L2)
    m = tmp_path / "m.jsonl"
    res = run_mpi(2, ["-m", "mpidml.train", "--data", path, "--algo", "local_sgd", "--tau", "4",
                      "--hogwild-threads", "2", "--optimizer", "sgd", "--lr", "16", "--batch-size", "256",
                      "--epochs", "6", "--l2", str(L2), "-q", "--metrics", str(m)],
                  timeout=180, env={"NUMBA_NUM_THREADS": "2"})
    assert res.returncode == 0, res.output
    s = [json.loads(line) for line in open(m)][-1]
    assert s["objective"] - f_star <= 0.02 * (s["objective_initial"] - f_star), (s["objective"], f_star)
    dense_path = str(tmp_path / "dense.h5")
    from mpidml.data.writer import write_dense
    write_dense(dense_path, dense[:100], y[:100])
    bad = run_mpi(1, ["-m", "mpidml.train", "--data", dense_path, "--algo", "local_sgd", "--hogwild-threads", "1",
                      "--optimizer", "sgd"], timeout=60)
    assert bad.returncode == 2 and "--hogwild-threads needs CSR" in bad.stderr, bad.output
