"""Multinomial softmax (multi-class logistic) regression kernels, dense and CSR rows.

Parameters are one flat vector of length ``d·K + K``: the weight matrix ``W`` (d, K),
row-major (``W[j, k] = w[j*K + k]``), then the biases ``b`` (K). Labels ``y`` are
class indices 0..K-1 (any numeric dtype holding integers). For a row x with logits
z = x·W + b the loss is logsumexp(z) − z[y] (computed with the max subtracted), and
its gradient is (softmax(z) − onehot(y)) ⊗ [x, 1].

Kernels are fused: each row of X is read once, its K logits are formed, and the
row's outer-product gradient is added at once. ``zk`` is a float64 scratch vector
of length K owned by the caller (no allocation per call). Regularisation is added
by the model to the global mean gradient.
"""

import math

from numba import njit

from ._common import FASTMATH, zero

__all__ = [
    "softmax_loss_grad_dense", "softmax_correct_dense",
    "softmax_loss_grad_csr", "softmax_correct_csr",
]


@njit(cache=True, nogil=True, inline="always")
def _softmax_residual(zk, label):
    """Turn logits ``zk`` in place into softmax(z) − onehot(label); return the loss."""
    K = zk.shape[0]
    m = zk[0]
    for k in range(1, K):
        m = max(m, zk[k])
    s = 0.0
    for k in range(K):
        s += math.exp(zk[k] - m)
    loss = m + math.log(s) - zk[label]
    inv = 1.0 / s
    for k in range(K):
        zk[k] = math.exp(zk[k] - m) * inv
    zk[label] -= 1.0
    return loss


@njit(cache=True, nogil=True, inline="always")
def _argmax(zk):
    best = 0
    for k in range(1, zk.shape[0]):
        if zk[k] > zk[best]:
            best = k
    return best


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def softmax_loss_grad_dense(X, y, rows, w, grad, zk):
    """Summed softmax cross-entropy over ``rows`` (returned, float64); the summed
    gradient (length d·K + K) overwrites ``grad``. ``zk``: float64 scratch of length K."""
    d = X.shape[1]
    K = zk.shape[0]
    W = w[: d * K].reshape((d, K))
    b = w[d * K:]
    gW = grad[: d * K].reshape((d, K))
    gb = grad[d * K:]
    zero(grad)
    loss = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        x = X[i]
        for k in range(K):
            zk[k] = b[k]
        for j in range(d):
            xj = x[j]
            for k in range(K):
                zk[k] += xj * W[j, k]
        loss += _softmax_residual(zk, int(y[i]))
        for j in range(d):
            xj = x[j]
            for k in range(K):
                gW[j, k] += xj * zk[k]
        for k in range(K):
            gb[k] += zk[k]
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def softmax_correct_dense(X, y, rows, w, zk):
    """Number of ``rows`` whose arg-max logit equals the class label."""
    d = X.shape[1]
    K = zk.shape[0]
    W = w[: d * K].reshape((d, K))
    b = w[d * K:]
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        for k in range(K):
            zk[k] = b[k]
        for j in range(d):
            xj = X[i, j]
            for k in range(K):
                zk[k] += xj * W[j, k]
        if _argmax(zk) == int(y[i]):
            correct += 1
    return correct


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def softmax_loss_grad_csr(data, indices, indptr, y, rows, w, grad, zk):
    """CSR version of ``softmax_loss_grad_dense``; d = (len(w) − K) / K."""
    K = zk.shape[0]
    d = w.shape[0] // K - 1
    W = w[: d * K].reshape((d, K))
    b = w[d * K:]
    gW = grad[: d * K].reshape((d, K))
    gb = grad[d * K:]
    zero(grad)
    loss = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        lo, hi = indptr[i], indptr[i + 1]
        for k in range(K):
            zk[k] = b[k]
        for p in range(lo, hi):
            v = data[p]
            j = indices[p]
            for k in range(K):
                zk[k] += v * W[j, k]
        loss += _softmax_residual(zk, int(y[i]))
        for p in range(lo, hi):
            v = data[p]
            j = indices[p]
            for k in range(K):
                gW[j, k] += v * zk[k]
        for k in range(K):
            gb[k] += zk[k]
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def softmax_correct_csr(data, indices, indptr, y, rows, w, zk):
    """Number of CSR ``rows`` whose arg-max logit equals the class label."""
    K = zk.shape[0]
    d = w.shape[0] // K - 1
    W = w[: d * K].reshape((d, K))
    b = w[d * K:]
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        for k in range(K):
            zk[k] = b[k]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            j = indices[p]
            for k in range(K):
                zk[k] += v * W[j, k]
        if _argmax(zk) == int(y[i]):
            correct += 1
    return correct
