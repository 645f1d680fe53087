"""The explicit-SIMD primitives (kernels/simd.py) and the dense row helpers built on them,
against numpy, for every row length around the vector width and both dtypes."""

import numpy as np
import pytest
from numba import njit

from mpidml.kernels._common import add_rows4, add_rows8, dot_row
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
def _update(X, rows, r, grad, eight):
    d = X.shape[1]
    if eight:
        for u in range(0, rows.shape[0] - 7, 8):
            add_rows8(grad, X, rows, 0, r, u, d)
    else:
        for u in range(0, rows.shape[0] - 3, 4):
            add_rows4(grad, X, rows, 0, r, u, d)


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
    for eight in (False, True):
        grad = np.zeros(d + 1, dtype)
        _update(X, rows, r, grad, eight)
        np.testing.assert_allclose(grad, ref, **tol)
