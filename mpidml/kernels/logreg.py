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

from ._common import FASTMATH, chunk_bounds, row_dot, sparse_dot, sum_parts_into, zero

__all__ = [
    "logreg_loss_grad_dense", "logreg_loss_grad_dense_parallel", "logreg_correct_dense",
    "logreg_loss_grad_csr", "logreg_loss_grad_csr_parallel", "logreg_correct_csr",
    "logreg_loss_grad_reference", "new_scratch", "BLOCK",
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
def _add_row(grad, x, s, d):
    for j in range(d):
        grad[j] += s * x[j]
    grad[d] += s


BLOCK = 64  # rows per block: z and y of a block live in a (2, BLOCK) float64 scratch


def new_scratch() -> np.ndarray:
    """Scratch for one call of the serial kernels (own it and reuse it: no allocation)."""
    return np.empty((2, BLOCK))


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _residual_block(zb, yb, nb):
    """zb[:nb] (logits) → σ(z) − y in place; return the block's summed loss. A plain
    loop over arrays with branch-free arithmetic: LLVM vectorises it (4 doubles)."""
    loss = 0.0
    for u in range(nb):
        li, ri = _loss_and_residual(zb[u], yb[u])
        loss += li
        zb[u] = ri
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _dense_range(X, y, rows, lo, hi, w, grad, scratch):
    """Add the gradient of rows[lo:hi] into ``grad``; return their summed loss.

    Blocks of BLOCK rows: (1) the rows' dot products, streaming X from memory;
    (2) the vectorised loss/residual of the whole block; (3) the gradient update,
    re-reading the block's rows from L1/L2 (64 rows × d values).
    """
    d = X.shape[1]
    zb = scratch[0]
    yb = scratch[1]
    loss = 0.0
    for b0 in range(lo, hi, BLOCK):
        nb = min(BLOCK, hi - b0)
        for u in range(nb):
            i = rows[b0 + u]
            zb[u] = row_dot(X[i], w, d)
            yb[u] = y[i]
        loss += _residual_block(zb, yb, nb)
        for u in range(nb):
            _add_row(grad, X[rows[b0 + u]], grad.dtype.type(zb[u]), d)
    return loss


@njit(cache=True, nogil=True)
def logreg_loss_grad_dense(X, y, rows, w, grad, scratch=None):
    """Sum over ``rows`` of the logistic loss (returned, float64) and its gradient.

    ``grad`` (length d + 1, dtype of ``w``) is overwritten with the summed gradient
    over the selected rows: Σ (σ(z_i) − y_i)·[x_i, 1]. ``scratch`` is a (2, BLOCK)
    float64 array (``new_scratch()``); pass one to allocate nothing (models do).
    """
    zero(grad)
    if scratch is None:
        return _dense_range(X, y, rows, 0, rows.shape[0], w, grad, np.empty((2, BLOCK)))
    return _dense_range(X, y, rows, 0, rows.shape[0], w, grad, scratch)


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
        losses[c] = _dense_range(X, y, rows, lo, hi, w, g, np.empty((2, BLOCK)))
    sum_parts_into(part, grad)
    return losses.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def logreg_correct_dense(X, y, rows, w):
    """Number of ``rows`` whose predicted class (z > 0 → 1) equals the 0/1 label."""
    d = X.shape[1]
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = row_dot(X[i], w, d)
        pred = 1.0 if z > 0 else 0.0
        if pred == y[i]:
            correct += 1
    return correct


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _csr_range(data, indices, indptr, y, rows, lo, hi, w, grad, scratch):
    """CSR rows rows[lo:hi], in blocks like ``_dense_range``."""
    d = grad.shape[0] - 1
    zb = scratch[0]
    yb = scratch[1]
    loss = 0.0
    for b0 in range(lo, hi, BLOCK):
        nb = min(BLOCK, hi - b0)
        for u in range(nb):
            i = rows[b0 + u]
            zb[u] = w[d] + sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
            yb[u] = y[i]
        loss += _residual_block(zb, yb, nb)
        for u in range(nb):
            i = rows[b0 + u]
            s = grad.dtype.type(zb[u])
            for p in range(indptr[i], indptr[i + 1]):
                grad[indices[p]] += s * data[p]
            grad[d] += s
    return loss


@njit(cache=True, nogil=True)
def logreg_loss_grad_csr(data, indices, indptr, y, rows, w, grad, scratch=None):
    """CSR rows (``data, indices, indptr``): summed loss (returned) and gradient into
    ``grad`` (length d + 1, overwritten); ``scratch`` as for the dense kernel."""
    zero(grad)
    if scratch is None:
        return _csr_range(data, indices, indptr, y, rows, 0, rows.shape[0], w, grad, np.empty((2, BLOCK)))
    return _csr_range(data, indices, indptr, y, rows, 0, rows.shape[0], w, grad, scratch)


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
        losses[c] = _csr_range(data, indices, indptr, y, rows, lo, hi, w, g, np.empty((2, BLOCK)))
    sum_parts_into(part, grad)
    return losses.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def logreg_correct_csr(data, indices, indptr, y, rows, w):
    """Number of CSR ``rows`` whose predicted class (z > 0 → 1) equals the 0/1 label."""
    d = w.shape[0] - 1
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = w[d] + sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
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
