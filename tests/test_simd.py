"""The explicit-SIMD primitives (kernels/simd.py) and the dense row helpers built on them,
against numpy, for every row length around the vector width and both dtypes."""

import numpy as np
import pytest
from numba import njit

from mpidml.kernels._common import add_rows8, dot_row
from mpidml.kernels.simd import lanes, vadd, vfma, vload, vload_tail, vsplat, vstore, vstore_tail, vsum, vzero

DTYPES = [np.float32, np.float64]
LENGTHS = list(range(0, 35)) + [63, 64, 65, 100]


@njit(cache=True)
def _tail_roundtrip(src, dst, j, n):
    """dst[j : min(j + lanes, n)] = 2 * src[...] + 1 through a masked load and store."""
    v = vload_tail(src, j, n)
    vstore_tail(dst, j, n, vfma(v, vsplat(src, 2.0), vsplat(src, 1.0)))


@njit(cache=True)
def _full_roundtrip(X, r, j, out):
    vstore(out, j, vadd(vload(X, (r, j)), vzero(out)))
    return lanes(out)


@njit(cache=True)
def _sum_vector(a, j):
    return vsum(vload(a, j))


@njit(cache=True)
def _dots(X, rows, w, z):
    for t in range(rows.shape[0]):
        z[t] = dot_row(X, rows[t], w, X.shape[1])


@njit(cache=True)
def _update(X, rows, r, grad):
    d = X.shape[1]
    for u in range(0, rows.shape[0] - 7, 8):
        add_rows8(grad, X, rows, 0, r, u, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_tail_touches_only_its_lanes(dtype):
    nl = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    for n in range(0, 2 * nl + 3):
        for j in range(0, n + 1):
            src = rng.standard_normal(n + 2 * nl).astype(dtype)
            src[n:] = np.nan          # beyond n: must not be read into any lane that is stored
            dst = np.full(n + 2 * nl, -7.0, dtype)
            _tail_roundtrip(src, dst, j, n)
            hi = min(j + nl, n)
            np.testing.assert_array_equal(dst[j:hi], 2 * src[j:hi] + 1)
            assert (dst[:j] == -7).all() and (dst[hi:] == -7).all(), (n, j)


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_vectors_and_lane_sum(dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 40)).astype(dtype)
    out = np.zeros(40, dtype)
    nl = _full_roundtrip(X, 2, 5, out)
    assert nl == 64 // np.dtype(dtype).itemsize
    np.testing.assert_array_equal(out[5:5 + nl], X[2, 5:5 + nl])
    assert not out[:5].any() and not out[5 + nl:].any()
    a = rng.standard_normal(nl + 1).astype(dtype)
    np.testing.assert_allclose(_sum_vector(a, 1), a[1:].astype(np.float64).sum(), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", LENGTHS)
def test_dot_row_and_row_updates_match_numpy(dtype, d):
    rng = np.random.default_rng(d)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    X = rng.standard_normal((20, d)).astype(dtype)
    w = rng.standard_normal(d + 1).astype(dtype)
    rows = rng.permutation(20)[:16].astype(np.int64)
    z = np.empty(16, dtype)
    _dots(X, rows, w, z)
    Xr = X[rows].astype(np.float64)
    np.testing.assert_allclose(z, Xr @ w[:d] + w[d], **tol)
    r = rng.standard_normal(16).astype(dtype)
    ref = np.concatenate([Xr.T @ r, [r.sum()]])
    grad = np.zeros(d + 1, dtype)
    _update(X, rows, r, grad)
    np.testing.assert_allclose(grad, ref, **tol)


def test_pow2_and_float32_transcendentals():
    from mpidml.kernels.logreg import _exp_neg_f32, _log1p_unit_f32
    from mpidml.kernels.simd import pow2_neg_f32

    @njit
    def run(k, a, e):
        p = np.empty_like(k)
        x = np.empty_like(a)
        q = np.empty_like(e)
        for i in range(k.shape[0]):
            p[i] = pow2_neg_f32(k[i])
        for i in range(a.shape[0]):
            x[i] = _exp_neg_f32(a[i])
        for i in range(e.shape[0]):
            q[i] = _log1p_unit_f32(e[i])
        return p, x, q

    k = np.arange(127, dtype=np.float32)
    a = np.linspace(0, 30, 100_001).astype(np.float32)
    e = np.linspace(0, 1, 100_001).astype(np.float32)
    p, x, q = run(k, a, e)
    np.testing.assert_array_equal(p, np.ldexp(np.float32(1), -np.arange(127)).astype(np.float32))
    ref_x = np.exp(-np.minimum(a.astype(np.float64), 24.0))
    assert np.max(np.abs(x - ref_x) / ref_x) < 3e-7
    ref_q = np.log1p(e.astype(np.float64))
    assert q[0] == 0 and np.max(np.abs(q[1:] - ref_q[1:]) / ref_q[1:]) < 3e-7


def test_dense_paths_match_numpy():
    from mpidml.kernels._common import consecutive
    from mpidml.kernels.logreg import logreg_loss_grad_dense
    from mpidml.kernels.lsq import lsq_loss_grad_dense

    from reference import logreg_loss_grad_reference, lsq_loss_grad_reference

    @njit
    def is_run(rows, lo, hi):
        return consecutive(rows, lo, hi)

    r = np.array([4, 5, 6, 8, 9], np.int64)
    assert is_run(r, 0, 3) and is_run(r, 3, 5)
    assert not is_run(r, 2, 4) and not is_run(r, 0, 0)
    rng = np.random.default_rng(3)
    # d = 37 and 100: the register path (w and the gradient held in up to 8 vectors) for
    # float32; d = 100 is the general path for float64 (8 lanes), 150 and 257 for both
    for dtype, d in [(t, d) for t in DTYPES for d in (37, 100, 150, 257)]:
        tol = dict(rtol=2e-4, atol=2e-3) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-9)
        X = rng.standard_normal((300, d)).astype(dtype)
        y = (rng.random(300) < 0.5).astype(dtype)
        w = (rng.standard_normal(d + 1) * 0.3).astype(dtype)
        for rows in (np.arange(7, 290, dtype=np.int64), np.r_[np.arange(7, 150), np.arange(151, 290)]):
            g = np.empty(d + 1, dtype)
            loss = logreg_loss_grad_dense(X, y, rows, w, g)
            ref_loss, ref_g = logreg_loss_grad_reference(X[rows], y[rows], w)
            np.testing.assert_allclose(loss, ref_loss, **tol)
            np.testing.assert_allclose(g, ref_g, **tol)
            loss = lsq_loss_grad_dense(X, y, rows, w, g)
            ref_loss, ref_g = lsq_loss_grad_reference(X[rows], y[rows], w)
            np.testing.assert_allclose(loss, ref_loss, **tol)
            np.testing.assert_allclose(g, ref_g, **tol)
