"""Binary logistic regression kernels, dense and CSR rows, float32 and float64.

Parameters are one flat vector ``w`` of length ``d + 1``: weights ``w[:d]`` and the
bias ``w[d]``. Labels ``y`` are 0/1 (any numeric dtype). Kernels work on the rows
``rows`` of ``X`` (an index array: a shuffled minibatch is a slice of a permutation,
so no rows are copied) and read each row once (fused forward + backward).

Loss of one row: softplus(z) − y·z with z = x·w[:d] + w[d], computed stably.
Regularisation is not applied here: it is added once to the global mean gradient.

The dense kernel works on blocks of four rows: the four dot products share every
load of ``w`` and the four gradient updates share every load/store of ``grad``, so
the inner loops are bound by streaming X, not by the gradient's load/store traffic.
``fastmath`` is limited to reassociation/contraction (vectorised reductions); NaN and
infinity semantics are kept. The ``*_parallel`` variants split the rows into
``part.shape[0]`` contiguous chunks (use ``numba.get_num_threads()`` rows), each with
its own gradient row of ``part``, reduced at the end in chunk order: the result
depends on the number of chunks, never on thread scheduling.
"""

import math

import numpy as np
from numba import njit, prange

from ._common import FASTMATH, chunk_bounds, zero

__all__ = [
    "logreg_loss_grad_dense", "logreg_loss_grad_dense_parallel", "logreg_correct_dense",
    "logreg_loss_grad_csr", "logreg_loss_grad_csr_parallel", "logreg_correct_csr",
    "logreg_loss_grad_reference",
]


@njit(cache=True, nogil=True, inline="always")
def _loss_and_residual(z, yi):
    """(softplus(z) − y·z, σ(z) − y) with one exp and one log1p, stable for any |z|."""
    e = math.exp(-abs(z))
    inv = 1.0 / (1.0 + e)
    prob = inv if z >= 0 else e * inv
    return max(z, 0.0) + math.log1p(e) - yi * z, prob - yi


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _dense_range(X, y, rows, lo, hi, w, grad):
    """Add the gradient of rows[lo:hi] into ``grad``; return their summed loss."""
    d = X.shape[1]
    loss = 0.0
    b = w[d]
    t = lo
    while t + 4 <= hi:
        x0 = X[rows[t]]
        x1 = X[rows[t + 1]]
        x2 = X[rows[t + 2]]
        x3 = X[rows[t + 3]]
        z0 = b
        z1 = b
        z2 = b
        z3 = b
        for j in range(d):
            wj = w[j]
            z0 += x0[j] * wj
            z1 += x1[j] * wj
            z2 += x2[j] * wj
            z3 += x3[j] * wj
        l0, r0 = _loss_and_residual(float(z0), float(y[rows[t]]))
        l1, r1 = _loss_and_residual(float(z1), float(y[rows[t + 1]]))
        l2, r2 = _loss_and_residual(float(z2), float(y[rows[t + 2]]))
        l3, r3 = _loss_and_residual(float(z3), float(y[rows[t + 3]]))
        loss += (l0 + l1) + (l2 + l3)
        s0 = grad.dtype.type(r0)
        s1 = grad.dtype.type(r1)
        s2 = grad.dtype.type(r2)
        s3 = grad.dtype.type(r3)
        for j in range(d):
            grad[j] += s0 * x0[j] + s1 * x1[j] + s2 * x2[j] + s3 * x3[j]
        grad[d] += (s0 + s1) + (s2 + s3)
        t += 4
    while t < hi:
        x0 = X[rows[t]]
        z0 = b
        for j in range(d):
            z0 += x0[j] * w[j]
        l0, r0 = _loss_and_residual(float(z0), float(y[rows[t]]))
        loss += l0
        s0 = grad.dtype.type(r0)
        for j in range(d):
            grad[j] += s0 * x0[j]
        grad[d] += s0
        t += 1
    return loss


@njit(cache=True, nogil=True)
def logreg_loss_grad_dense(X, y, rows, w, grad):
    """Sum over ``rows`` of the logistic loss (returned, float64) and its gradient.

    ``grad`` (length d + 1, dtype of ``w``) is overwritten with the summed gradient
    over the selected rows: Σ (σ(z_i) − y_i)·[x_i, 1]. Nothing is allocated.
    """
    zero(grad)
    return _dense_range(X, y, rows, 0, rows.shape[0], w, grad)


@njit(cache=True, nogil=True, parallel=True)
def logreg_loss_grad_dense_parallel(X, y, rows, w, grad, part):
    """``logreg_loss_grad_dense`` with ``prange`` over one row chunk per thread.

    ``part`` (chunks × (d + 1), dtype of ``w``; chunks = numba.get_num_threads())
    holds the per-chunk gradients; they are summed into ``grad`` in chunk order.
    """
    nt = part.shape[0]
    m = rows.shape[0]
    losses = np.zeros(nt)  # nt floats: the only allocation
    for c in prange(nt):
        lo, hi = chunk_bounds(m, nt, c)
        g = part[c]
        zero(g)
        losses[c] = _dense_range(X, y, rows, lo, hi, w, g)
    zero(grad)
    for c in range(nt):
        for j in range(grad.shape[0]):
            grad[j] += part[c, j]
    return losses.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def logreg_correct_dense(X, y, rows, w):
    """Number of ``rows`` whose predicted class (z > 0 → 1) equals the 0/1 label."""
    d = X.shape[1]
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = w[d]
        for j in range(d):
            z += X[i, j] * w[j]
        pred = 1.0 if z > 0 else 0.0
        if pred == y[i]:
            correct += 1
    return correct


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _csr_range(data, indices, indptr, y, rows, lo, hi, w, grad):
    d = grad.shape[0] - 1
    loss = 0.0
    for t in range(lo, hi):
        i = rows[t]
        a, b = indptr[i], indptr[i + 1]
        z = w[d]
        for p in range(a, b):
            z += data[p] * w[indices[p]]
        li, ri = _loss_and_residual(float(z), float(y[i]))
        loss += li
        s = grad.dtype.type(ri)
        for p in range(a, b):
            grad[indices[p]] += s * data[p]
        grad[d] += s
    return loss


@njit(cache=True, nogil=True)
def logreg_loss_grad_csr(data, indices, indptr, y, rows, w, grad):
    """CSR rows (``data, indices, indptr``): summed loss (returned) and gradient into
    ``grad`` (length d + 1, overwritten). Each nonzero is read once per call."""
    zero(grad)
    return _csr_range(data, indices, indptr, y, rows, 0, rows.shape[0], w, grad)


@njit(cache=True, nogil=True, parallel=True)
def logreg_loss_grad_csr_parallel(data, indices, indptr, y, rows, w, grad, part):
    """``logreg_loss_grad_csr`` with one row chunk and one gradient row of ``part`` per thread."""
    nt = part.shape[0]
    m = rows.shape[0]
    losses = np.zeros(nt)
    for c in prange(nt):
        lo, hi = chunk_bounds(m, nt, c)
        g = part[c]
        zero(g)
        losses[c] = _csr_range(data, indices, indptr, y, rows, lo, hi, w, g)
    zero(grad)
    for c in range(nt):
        for j in range(grad.shape[0]):
            grad[j] += part[c, j]
    return losses.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def logreg_correct_csr(data, indices, indptr, y, rows, w):
    """Number of CSR ``rows`` whose predicted class (z > 0 → 1) equals the 0/1 label."""
    d = w.shape[0] - 1
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = w[d]
        for p in range(indptr[i], indptr[i + 1]):
            z += data[p] * w[indices[p]]
        pred = 1.0 if z > 0 else 0.0
        if pred == y[i]:
            correct += 1
    return correct


def logreg_loss_grad_reference(X, y, w):
    """Plain numpy reference (float64): summed loss and gradient over all rows of X."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    z = X @ w[:-1] + w[-1]
    loss = np.sum(np.logaddexp(0.0, z) - y * z)
    r = 1.0 / (1.0 + np.exp(-z)) - y
    return loss, np.concatenate([X.T @ r, [r.sum()]])
