"""Kernels against a plain numpy reference on random data, float32 and float64."""

import numpy as np
import pytest

from mpidml.kernels.logreg import logreg_correct_dense, logreg_loss_grad_dense

from reference import logreg_loss_grad_reference

TOL = {np.float32: dict(rtol=2e-4, atol=2e-3), np.float64: dict(rtol=1e-10, atol=1e-9)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d", [(1, 1), (37, 5), (500, 64)])
def test_loss_grad_matches_numpy(dtype, n, d):
    rng = np.random.default_rng(n * 100 + d)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = (rng.random(n) < 0.4).astype(np.float32)
    w = (rng.standard_normal(d + 1) * 3).astype(dtype)  # large margins: stable-softplus path
    rows = rng.permutation(n)[: max(1, n // 2)].astype(np.int64)
    grad = np.full(d + 1, np.nan, dtype=dtype)  # must be overwritten, not accumulated into
    loss = logreg_loss_grad_dense(X, y, rows, w, grad)
    ref_loss, ref_grad = logreg_loss_grad_reference(X[rows], y[rows], w)
    assert grad.dtype == dtype
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, ref_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correct_count(dtype):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 8)).astype(dtype)
    y = (rng.random(300) < 0.5).astype(np.float32)
    w = rng.standard_normal(9).astype(dtype)
    rows = np.arange(300, dtype=np.int64)
    z = X.astype(np.float64) @ w[:-1] + w[-1]
    assert logreg_correct_dense(X, y, rows, w) == int(np.sum((z > 0) == (y == 1)))


def test_empty_rows():
    X = np.ones((3, 2), np.float32)
    grad = np.full(3, 5.0, np.float32)
    assert logreg_loss_grad_dense(X, np.zeros(3, np.float32), np.zeros(0, np.int64),
                                  np.zeros(3, np.float32), grad) == 0.0
    assert not grad.any()
