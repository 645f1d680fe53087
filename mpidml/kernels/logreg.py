"""Binary logistic regression kernels, dense and CSR rows, float32 and float64.

Parameters are one flat vector ``w`` of length ``d + 1``: weights ``w[:d]`` and the
bias ``w[d]``. Labels ``y`` are 0/1 (any numeric dtype). Kernels work on the rows
``rows`` of ``X`` (an index array: a shuffled minibatch is a slice of a permutation,
so no rows are copied) and read each row once (fused forward + backward).

Loss of one row: softplus(z) − y·z with z = x·w[:d] + w[d], computed stably.
Regularisation is not applied here: it is added once to the global mean gradient.

Speed (see bench/kernels.py): the per-row σ and softplus use a branch-free
polynomial exp/log1p (no libm calls, ~1e-16 relative error) so they pipeline, and the
dense kernel is software-pipelined by one row (row t's dot product is issued beside
row t − 1's residual and gradient update). ``fastmath`` is limited to reassociation and
contraction (vectorised reductions, FMA); NaN and infinity semantics are kept.
``error_model="numpy"`` removes the ZeroDivisionError branches that stop vectorisation. The ``*_parallel`` variants split the rows into
``part.shape[0]`` contiguous chunks (use ``numba.get_num_threads()`` rows), each with
its own gradient row of ``part``, reduced at the end in chunk order: the result
depends on the number of chunks, never on thread scheduling.
"""

import numpy as np
from numba import njit, prange

from ._common import FASTMATH, chunk_bounds, zero

__all__ = [
    "logreg_loss_grad_dense", "logreg_loss_grad_dense_parallel", "logreg_correct_dense",
    "logreg_loss_grad_csr", "logreg_loss_grad_csr_parallel", "logreg_correct_csr",
    "logreg_loss_grad_reference",
]


# exp(−a) for a in [0, _EXP_CLAMP] and log1p(e) for e in [0, 1] as straight-line
# arithmetic (no libm calls), so LLVM can interleave and vectorise them across the rows
# of a block. Range reduction a = k·ln2 + r, |r| ≤ ln2/2: exp(−a) = 2^−k · exp(−r), with
# exp(−r) from its degree-12 Taylor polynomial (truncation < 2e-16 relative) and 2^−k
# built from the bits of k (k < 64). Beyond the clamp exp(−a) < 5e-18 and replacing it by
# exp(−40) changes σ(z) and softplus(z) by < 5e-18 absolute (below float64 resolution
# where it matters). log1p(e) = 2·atanh(s), s = e/(2+e) ≤ 1/3: odd series to s^31
# (truncation < 2e-16 relative).
_EXP_CLAMP = 40.0
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _exp_neg(a):
    """exp(−a) for a ≥ 0 (clamped at 40), relative error ~1e-16. Float-only and
    branch-free (selects), so it vectorises with AVX2 (no float→int64 conversion)."""
    a = min(a, _EXP_CLAMP)
    kf = np.floor(a * _INV_LN2 + 0.5)
    r = (kf * _LN2_HI - a) + kf * _LN2_LO   # −r, in [−ln2/2, ln2/2]
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # × 2^−k, k = kf < 64, by its binary digits
    c = kf >= 32.0
    p *= 2.3283064365386963e-10 if c else 1.0
    kf -= 32.0 if c else 0.0
    c = kf >= 16.0
    p *= 1.52587890625e-05 if c else 1.0
    kf -= 16.0 if c else 0.0
    c = kf >= 8.0
    p *= 0.00390625 if c else 1.0
    kf -= 8.0 if c else 0.0
    c = kf >= 4.0
    p *= 0.0625 if c else 1.0
    kf -= 4.0 if c else 0.0
    c = kf >= 2.0
    p *= 0.25 if c else 1.0
    kf -= 2.0 if c else 0.0
    p *= 0.5 if kf >= 1.0 else 1.0
    return p


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _log1p_unit(e):
    """log(1 + e) for 0 ≤ e ≤ 1, relative error ~1e-16."""
    s = e / (2.0 + e)
    s2 = s * s
    q = 1.0 / 31.0
    q = q * s2 + 1.0 / 29.0
    q = q * s2 + 1.0 / 27.0
    q = q * s2 + 1.0 / 25.0
    q = q * s2 + 1.0 / 23.0
    q = q * s2 + 1.0 / 21.0
    q = q * s2 + 1.0 / 19.0
    q = q * s2 + 1.0 / 17.0
    q = q * s2 + 1.0 / 15.0
    q = q * s2 + 1.0 / 13.0
    q = q * s2 + 1.0 / 11.0
    q = q * s2 + 1.0 / 9.0
    q = q * s2 + 1.0 / 7.0
    q = q * s2 + 1.0 / 5.0
    q = q * s2 + 1.0 / 3.0
    q = q * s2 + 1.0
    return 2.0 * s * q


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _loss_and_residual(z, yi):
    """(softplus(z) − y·z, σ(z) − y) from one exp(−|z|), stable for any z; branch-free."""
    a = abs(z)
    e = _exp_neg(a)
    prob = (1.0 if z >= 0 else e) / (1.0 + e)
    return 0.5 * (z + a) + _log1p_unit(e) - yi * z, prob - yi


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _row_dot(x, w, d):
    z = w[d]
    for j in range(d):
        z += x[j] * w[j]
    return z


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _add_row(grad, x, s, d):
    for j in range(d):
        grad[j] += s * x[j]
    grad[d] += s


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _dense_range(X, y, rows, lo, hi, w, grad):
    """Add the gradient of rows[lo:hi] into ``grad``; return their summed loss.

    Software-pipelined by one row: the dot product of row t (streamed from memory)
    is issued next to the loss/residual and gradient update of row t − 1 (in L1), so
    the out-of-order core overlaps the memory stream with the row's exp/log1p chain.
    """
    d = X.shape[1]
    loss = 0.0
    if hi <= lo:
        return loss
    x_prev = X[rows[lo]]
    z_prev = _row_dot(x_prev, w, d)
    y_prev = float(y[rows[lo]])
    for t in range(lo + 1, hi):
        x = X[rows[t]]
        z = _row_dot(x, w, d)
        li, ri = _loss_and_residual(float(z_prev), y_prev)
        loss += li
        _add_row(grad, x_prev, grad.dtype.type(ri), d)
        x_prev = x
        z_prev = z
        y_prev = float(y[rows[t]])
    li, ri = _loss_and_residual(float(z_prev), y_prev)
    loss += li
    _add_row(grad, x_prev, grad.dtype.type(ri), d)
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


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
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
