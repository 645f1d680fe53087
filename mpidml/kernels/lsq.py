"""Least-squares (ridge) regression kernels, dense and CSR rows, float32 and float64.

Parameters: one flat vector ``w`` of length d + 1 (weights, then bias). Labels are
real numbers. Loss of a row: ½(z − y)² with z = x·w[:d] + w[d]; gradient (z − y)·[x, 1].
Fused (X read once per call); ridge (L2) is added by the model to the mean gradient.
"""

import numpy as np
from numba import njit

from ._common import FASTMATH, dot_row, sparse_dot, uidx, zero
from .logreg import BLOCK, dense_glm_range, new_scratch

__all__ = ["new_scratch", "lsq_loss_grad_dense", "lsq_sq_error_dense", "lsq_loss_grad_csr",
           "lsq_sq_error_csr"]


@njit(cache=True, nogil=True)
def lsq_loss_grad_dense(X, y, rows, w, grad, scratch=None):
    """Σ over ``rows`` of ½(z − y)² (returned, float64); summed gradient overwrites ``grad``.
    ``scratch``: ``new_scratch(w.dtype)``; without one a small buffer is allocated. The
    row loop is the logistic kernel's (``dense_glm_range``, least-squares residuals)."""
    zero(grad)
    if scratch is None:
        return dense_glm_range(X, y, rows, 0, rows.shape[0], w, grad, np.empty((2, BLOCK), grad.dtype), False)
    return dense_glm_range(X, y, rows, 0, rows.shape[0], w, grad, scratch, False)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lsq_sq_error_dense(X, y, rows, w):
    """Σ over ``rows`` of (z − y)² (float64): the numerator of the RMSE."""
    d = X.shape[1]
    sse = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = dot_row(X, i, w, d)
        r = float(z) - float(y[i])
        sse += r * r
    return sse


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lsq_loss_grad_csr(data, indices, indptr, y, rows, w, grad):
    """CSR version of ``lsq_loss_grad_dense`` (d = len(w) − 1)."""
    d = w.shape[0] - 1
    zero(grad)
    loss = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        lo, hi = indptr[i], indptr[i + 1]
        z = w[d] + sparse_dot(data, indices, lo, hi, w)
        r = float(z) - float(y[i])
        loss += 0.5 * r * r
        s = grad.dtype.type(r)
        for p in range(uidx(lo), uidx(hi)):
            grad[uidx(indices[p])] += s * data[p]
        grad[d] += s
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lsq_sq_error_csr(data, indices, indptr, y, rows, w):
    """Σ over CSR ``rows`` of (z − y)²."""
    d = w.shape[0] - 1
    sse = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = w[d] + sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
        r = float(z) - float(y[i])
        sse += r * r
    return sse
