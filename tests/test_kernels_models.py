"""Every kernel (dense and CSR, float32 and float64) against a plain numpy reference on
random data, plus central finite-difference gradient checks in float64.

Tolerances: float64 rtol 1e-9 (sums of a few hundred terms); float32 rtol 2e-4 with an
absolute floor scaled to the size of the summed quantity (single-precision accumulation
of a few hundred rows)."""

import numpy as np
import pytest
import scipy.sparse as sp

from mpidml.data.layout import CSRMatrix
from mpidml.kernels.logreg import (
    logreg_correct_csr,
    logreg_correct_dense,
    logreg_loss_grad_csr,
    logreg_loss_grad_csr_parallel,
    logreg_loss_grad_dense,
    logreg_loss_grad_dense_parallel,
    new_scratch,
)
from mpidml.kernels.lsq import (
    lsq_loss_grad_csr,
    lsq_loss_grad_dense,
    lsq_sq_error_csr,
    lsq_sq_error_dense,
)
from mpidml.kernels.mlp import (
    mlp_correct_csr,
    mlp_correct_dense,
    mlp_loss_grad_csr,
    mlp_loss_grad_dense,
    mlp_param_count,
)
from mpidml.kernels.softmax import (
    softmax_correct_csr,
    softmax_correct_dense,
    softmax_loss_grad_csr,
    softmax_loss_grad_dense,
)
from mpidml.models import MLP, LeastSquares, LogReg, Softmax

from reference import (
    logreg_loss_grad_reference,
    lsq_loss_grad_reference,
    mlp_loss_grad_reference,
    softmax_loss_grad_reference,
)

DTYPES = [np.float32, np.float64]


def tol(dtype, scale=1.0):
    if dtype == np.float64:
        return dict(rtol=1e-9, atol=1e-9 * scale)
    return dict(rtol=2e-4, atol=2e-4 * scale)


def make_data(n, d, dtype, labels, K=3, density=0.3, seed=0):
    """Random dense X, its CSR form (with some empty rows), labels and rows subset."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) > density] = 0.0
    X[::7] = 0.0  # empty rows in CSR
    X = X.astype(dtype)
    if labels == "binary":
        y = (rng.random(n) < 0.4).astype(np.float32)
    elif labels == "classes":
        y = rng.integers(0, K, n).astype(np.int64)
    else:
        y = rng.standard_normal(n).astype(dtype) * 2
    csr = sp.csr_matrix(X)
    C = CSRMatrix(csr.data, csr.indices.astype(np.int32), csr.indptr.astype(np.int64), X.shape)
    rows = rng.permutation(n)[: max(1, (2 * n) // 3)].astype(np.int64)
    return X, C, y, rows


# ---------------------------------------------------------------- raw kernels vs numpy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", [(1, 1), (37, 5), (403, 64), (200, 3), (1001, 100)])
def test_logreg_kernels(dtype, n, d):
    X, C, y, rows = make_data(n, d, dtype, "binary", seed=n + d)
    w = (np.random.default_rng(1).standard_normal(d + 1) * 2).astype(dtype)
    ref_loss, ref_grad = logreg_loss_grad_reference(X[rows], y[rows], w)
    part = np.empty((3, d + 1), dtype)
    for name, call in [
        ("dense", lambda g: logreg_loss_grad_dense(X, y, rows, w, g)),
        ("dense-scratch", lambda g: logreg_loss_grad_dense(X, y, rows, w, g, new_scratch())),
        ("dense-scratch-dtype", lambda g: logreg_loss_grad_dense(X, y, rows, w, g, new_scratch(dtype))),
        ("dense-par", lambda g: logreg_loss_grad_dense_parallel(X, y, rows, w, g, part)),
        ("csr", lambda g: logreg_loss_grad_csr(C.data, C.indices, C.indptr, y, rows, w, g)),
        ("csr-scratch", lambda g: logreg_loss_grad_csr(C.data, C.indices, C.indptr, y, rows, w, g, new_scratch())),
        ("csr-scratch-dtype", lambda g: logreg_loss_grad_csr(C.data, C.indices, C.indptr, y, rows, w, g,
                                                             new_scratch(dtype))),
        ("csr-par", lambda g: logreg_loss_grad_csr_parallel(C.data, C.indices, C.indptr, y, rows, w, g, part)),
        ("csr-int64", lambda g: logreg_loss_grad_csr(C.data, C.indices.astype(np.int64), C.indptr, y, rows, w, g)),
    ]:
        grad = np.full(d + 1, np.nan, dtype)  # overwritten, not accumulated into
        loss = call(grad)
        np.testing.assert_allclose(loss, ref_loss, **tol(dtype, len(rows)), err_msg=name)
        np.testing.assert_allclose(grad, ref_grad, **tol(dtype, len(rows)), err_msg=name)
    z = X[rows].astype(np.float64) @ w[:-1] + w[-1]
    expect = int(np.sum((z > 0) == (y[rows] == 1)))
    assert logreg_correct_dense(X, y, rows, w) == expect
    assert logreg_correct_csr(C.data, C.indices, C.indptr, y, rows, w) == expect


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d,K", [(1, 1, 2), (41, 6, 3), (300, 40, 10)])
def test_softmax_kernels(dtype, n, d, K):
    X, C, y, rows = make_data(n, d, dtype, "classes", K=K, seed=n * K)
    w = np.random.default_rng(2).standard_normal(d * K + K).astype(dtype)
    zk = np.empty(K)
    ref_loss, ref_grad = softmax_loss_grad_reference(X[rows], y[rows], w, K)
    for name, call in [
        ("dense", lambda g: softmax_loss_grad_dense(X, y, rows, w, g, zk)),
        ("csr", lambda g: softmax_loss_grad_csr(C.data, C.indices, C.indptr, y, rows, w, g, zk)),
    ]:
        grad = np.full(d * K + K, np.nan, dtype)
        loss = call(grad)
        np.testing.assert_allclose(loss, ref_loss, **tol(dtype, len(rows)), err_msg=name)
        np.testing.assert_allclose(grad, ref_grad, **tol(dtype, len(rows)), err_msg=name)
    Z = X[rows].astype(np.float64) @ w[: d * K].reshape(d, K) + w[d * K:]
    expect = int(np.sum(Z.argmax(axis=1) == y[rows]))
    assert softmax_correct_dense(X, y, rows, w, zk) == expect
    assert softmax_correct_csr(C.data, C.indices, C.indptr, y, rows, w, zk) == expect


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", [(1, 1), (50, 7), (400, 64)])
def test_lsq_kernels(dtype, n, d):
    X, C, y, rows = make_data(n, d, dtype, "real", seed=3 * n)
    w = np.random.default_rng(3).standard_normal(d + 1).astype(dtype)
    ref_loss, ref_grad = lsq_loss_grad_reference(X[rows], y[rows], w)
    for name, call in [
        ("dense", lambda g: lsq_loss_grad_dense(X, y, rows, w, g)),
        ("csr", lambda g: lsq_loss_grad_csr(C.data, C.indices, C.indptr, y, rows, w, g)),
    ]:
        grad = np.full(d + 1, np.nan, dtype)
        loss = call(grad)
        np.testing.assert_allclose(loss, ref_loss, **tol(dtype, len(rows) * 10), err_msg=name)
        np.testing.assert_allclose(grad, ref_grad, **tol(dtype, len(rows) * 10), err_msg=name)
    np.testing.assert_allclose(lsq_sq_error_dense(X, y, rows, w), 2 * ref_loss, **tol(dtype, len(rows) * 10))
    np.testing.assert_allclose(lsq_sq_error_csr(C.data, C.indices, C.indptr, y, rows, w), 2 * ref_loss,
                               **tol(dtype, len(rows) * 10))


def mlp_scratch(sizes, cap, dtype):
    sizes = np.asarray(sizes, np.int64)
    return dict(act=np.full(cap * int(sizes[1:].sum()), np.nan, dtype),
                dbuf=np.full(2 * cap * int(sizes[1:].max()), np.nan, dtype),
                gtmp=np.full(mlp_param_count(sizes), np.nan, dtype),
                xb=np.full(cap * int(sizes[0]), np.nan, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,n,cap", [([5, 3], 20, 8), ([6, 8, 4], 37, 16), ([12, 16, 8, 5], 90, 7),
                                         ([30, 64, 10], 200, 256)])
def test_mlp_kernels(dtype, sizes, n, cap):
    """Including chunking: rows > cap exercise the accumulation across chunks."""
    d, K = sizes[0], sizes[-1]
    X, C, y, rows = make_data(n, d, dtype, "classes", K=K, density=0.6, seed=n)
    sz = np.asarray(sizes, np.int64)
    params = (np.random.default_rng(4).standard_normal(mlp_param_count(sizes)) * 0.5).astype(dtype)
    ref_loss, ref_grad = mlp_loss_grad_reference(X[rows], y[rows], params, sizes)
    s = mlp_scratch(sizes, cap, dtype)
    for name, call in [
        ("dense", lambda g: mlp_loss_grad_dense(X, y, rows, params, g, sz, s["act"], s["dbuf"], s["gtmp"], s["xb"])),
        ("csr", lambda g: mlp_loss_grad_csr(C.data, C.indices, C.indptr, y, rows, params, g, sz,
                                            s["act"], s["dbuf"], s["gtmp"], cap)),
    ]:
        grad = np.full(len(params), np.nan, dtype)
        loss = call(grad)
        np.testing.assert_allclose(loss, ref_loss, **tol(dtype, len(rows) * 10), err_msg=name)
        np.testing.assert_allclose(grad, ref_grad, **tol(dtype, len(rows) * 10), err_msg=name)
    # predictions: forward in float64
    Xr = X[rows].astype(np.float64)
    A, off = Xr, 0
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = params[off: off + a * b].reshape(a, b).astype(np.float64)
        A = A @ W + params[off + a * b: off + a * b + b]
        A = np.maximum(A, 0) if l < len(sizes) - 2 else A
        off += a * b + b
    top2 = np.sort(A, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3  # skip near-ties for float32
    hits = int(np.sum(A.argmax(axis=1) == y[rows]))
    got_d = mlp_correct_dense(X, y, rows, params, sz, s["act"], s["xb"])
    got_c = mlp_correct_csr(C.data, C.indices, C.indptr, y, rows, params, sz, s["act"], cap)
    assert abs(got_d - hits) <= int(np.sum(~clear)) and abs(got_c - hits) <= int(np.sum(~clear))


def test_empty_rows_give_zero():
    X = np.ones((3, 2), np.float32)
    y = np.zeros(3, np.float32)
    none = np.zeros(0, np.int64)
    for model in (LogReg(2), Softmax(2, 3), LeastSquares(2), MLP(2, 3, hidden=(4,))):
        params = model.init_params(seed=1)
        grad = np.full(model.nparams, 5.0, np.float32)
        assert model.loss_grad_sum(X, y, none, params, grad) == 0.0
        assert not grad.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_logreg_extreme_margins_stay_finite(dtype):
    X = np.array([[1.0], [-1.0]], dtype=dtype)
    y = np.array([0.0, 1.0], dtype=np.float32)
    w = np.array([500.0, 0.0], dtype=dtype)  # z = ±500: exp would overflow naively
    grad = np.empty(2, dtype=dtype)
    loss = logreg_loss_grad_dense(X, y, np.arange(2), w, grad)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, 1000.0, rtol=1e-6)


# ---------------------------------------------------------------- models: FD gradient checks
def models_for(d, K):
    return [LogReg(d, np.float64, l2=0.3), Softmax(d, K, np.float64, l2=0.2),
            LeastSquares(d, np.float64, l2=0.1), MLP(d, K, hidden=(7, 5), dtype=np.float64, l2=0.05)]


def labels_for(model, n, rng, K):
    if isinstance(model, LogReg):
        return (rng.random(n) < 0.5).astype(np.float64)
    if isinstance(model, LeastSquares):
        return rng.standard_normal(n)
    return rng.integers(0, K, n).astype(np.float64)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("which", range(4))
def test_finite_difference_gradient(which, sparse):
    """Central differences of the full objective (mean loss + regulariser) agree with
    the kernel gradient + add_regularizer_grad to ~1e-6 relative."""
    d, K, n = 6, 4, 25
    rng = np.random.default_rng(10 + which)
    model = models_for(d, K)[which]
    X, C, _, _ = make_data(n, d, np.float64, "real", density=0.7, seed=which)
    y = labels_for(model, n, rng, K)
    Xin = C if sparse else X
    rows = np.arange(n, dtype=np.int64)
    params = model.init_params(seed=3) + 0.3 * rng.standard_normal(model.nparams)

    def objective(p):
        g = np.empty(model.nparams)
        return model.loss_grad_sum(Xin, y, rows, p, g) / n + model.regularizer(p)

    grad = np.empty(model.nparams)
    model.loss_grad_sum(Xin, y, rows, params, grad)
    grad /= n
    model.add_regularizer_grad(params, grad)
    h = 1e-6
    fd = np.empty(model.nparams)
    for k in range(model.nparams):
        e = np.zeros(model.nparams)
        e[k] = h
        fd[k] = (objective(params + e) - objective(params - e)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_models_dispatch_csr_and_views():
    d, K = 5, 3
    X, C, y, rows = make_data(40, d, np.float64, "classes", K=K)
    for model in models_for(d, K):
        yy = (y > 0).astype(np.float64) if isinstance(model, LogReg) else y.astype(np.float64)
        p = model.init_params(seed=0)
        assert np.array_equal(p, model.init_params(seed=0))  # deterministic: ranks agree
        g1, g2 = np.empty_like(p), np.empty_like(p)
        l1 = model.loss_grad_sum(X, yy, rows, p, g1)
        l2 = model.loss_grad_sum(C, yy, rows, p, g2)
        np.testing.assert_allclose(l1, l2, rtol=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)
        assert model.metric_sum(X, yy, rows, p) == pytest.approx(model.metric_sum(C, yy, rows, p))
        views = model.views(p)
        assert sum(v.size for v in views.values()) == model.nparams
        for v in views.values():
            assert np.shares_memory(v, p)


def test_mlp_init_is_random_and_layers_are_views():
    m = MLP(784, 10, hidden=(256, 128), dtype=np.float32)
    p = m.init_params(seed=1)
    assert m.nparams == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == p.size
    v = m.views(p)
    assert v["W0"].shape == (784, 256) and v["b2"].shape == (10,)
    assert v["W0"].std() > 0 and not v["b0"].any()
    v["W1"][0, 0] = 123.0
    assert 123.0 in p
    assert not np.array_equal(p, m.init_params(seed=2))


def test_logreg_model_takes_prange_kernels_for_large_calls_only():
    from mpidml.models import LogReg
    rng = np.random.default_rng(11)
    X = rng.standard_normal((3000, 20)).astype(np.float32)
    y = (rng.random(3000) < 0.5).astype(np.float32)
    ser, par = LogReg(20), LogReg(20, parallel=True)
    w = (rng.standard_normal(21) * 0.3).astype(np.float32)
    g_ser, g_par = np.empty(21, np.float32), np.empty(21, np.float32)
    small = np.arange(100, dtype=np.int64)
    ser.loss_grad_sum(X, y, small, w, g_ser)
    par.loss_grad_sum(X, y, small, w, g_par)
    np.testing.assert_array_equal(g_ser, g_par)          # below PARALLEL_MIN_ROWS: the same serial kernel
    big = rng.permutation(3000)[:2500].astype(np.int64)
    l_ser = ser.loss_grad_sum(X, y, big, w, g_ser)
    l_par = par.loss_grad_sum(X, y, big, w, g_par)
    np.testing.assert_allclose(l_par, l_ser, rtol=1e-5)
    np.testing.assert_allclose(g_par, g_ser, rtol=1e-4, atol=1e-3)
