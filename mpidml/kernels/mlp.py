"""Multilayer perceptron kernels: ReLU hidden layers, softmax output, cross-entropy.

Layer widths are an int64 array ``sizes = [d, h1, …, hL-1, K]``. Parameters are ONE
flat vector: for each layer l in order its weight matrix W_l (sizes[l], sizes[l+1])
row-major, then its bias b_l (sizes[l+1]); ``mlp_param_count(sizes)`` is the length.
Labels are class indices 0..K-1.

A call processes ``rows`` in chunks of at most ``cap`` rows (the scratch capacity):
forward Z_l = A_l·W_l + b_l, A_{l+1} = ReLU(Z_l), P = softmax(Z_last); backward
D = P − onehot(y), gW_l = A_lᵀ·D, gb_l = Σ_rows D, D ← (D·W_lᵀ) ⊙ [A_l > 0]. The
matrix products call BLAS through numba's ``np.dot(a, b, out)`` (needs scipy).
Dense inputs are gathered into the ``xb`` scratch (cap, d) per chunk; CSR inputs
are multiplied directly from ``data, indices, indptr`` (no densification).

Scratch (owned by the model, never allocated per call), all of the parameters' dtype:
``act`` (cap · Σ sizes[1:]) activations, ``dbuf`` (2 · cap · max(sizes[1:]))
ping-pong deltas, ``gtmp`` (n params) for chunks after the first, ``xb`` (cap · d)
for dense inputs.
"""

import math

import numpy as np
from numba import njit

from ._common import FASTMATH
from .simd import lanes, vload, vload_tail, vstore, vstore_tail

__all__ = [
    "mlp_param_count", "mlp_loss_grad_dense", "mlp_correct_dense",
    "mlp_loss_grad_csr", "mlp_correct_csr",
]


def mlp_param_count(sizes) -> int:
    """Length of the flat parameter vector for layer widths ``sizes``."""
    return int(sum(int(a) * int(b) + int(b) for a, b in zip(sizes[:-1], sizes[1:])))


@njit(cache=True, nogil=True, inline="always")
def _offset(sizes, l):
    """Start of layer l's weights in the flat parameter vector."""
    off = 0
    for i in range(l):
        off += sizes[i] * sizes[i + 1] + sizes[i + 1]
    return off


@njit(cache=True, nogil=True, inline="always")
def _weight(flat, sizes, l):
    off = _offset(sizes, l)
    return flat[off: off + sizes[l] * sizes[l + 1]].reshape((sizes[l], sizes[l + 1]))


@njit(cache=True, nogil=True, inline="always")
def _bias(flat, sizes, l):
    off = _offset(sizes, l) + sizes[l] * sizes[l + 1]
    return flat[off: off + sizes[l + 1]]


@njit(cache=True, nogil=True, inline="always")
def _act(act, sizes, l, nb, cap):
    """Activation block of layer l's output (nb, sizes[l+1]) inside the flat scratch."""
    off = 0
    for i in range(1, l + 1):
        off += cap * sizes[i]
    return act[off: off + nb * sizes[l + 1]].reshape((nb, sizes[l + 1]))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _bias_relu(Z, b, relu):
    for t in range(Z.shape[0]):
        for k in range(Z.shape[1]):
            v = Z[t, k] + b[k]
            Z[t, k] = v if (v > 0 or not relu) else 0


@njit(cache=True, nogil=True)
def _forward_rest(params, sizes, act, nb, cap):
    """Given layer 0's pre-activation X·W_0 in its act block: add biases, apply ReLU,
    and run layers 1..L-1. The last block holds the logits on return."""
    L = sizes.shape[0] - 1
    for l in range(L):
        Z = _act(act, sizes, l, nb, cap)
        if l > 0:
            np.dot(_act(act, sizes, l - 1, nb, cap), _weight(params, sizes, l), Z)
        _bias_relu(Z, _bias(params, sizes, l), l < L - 1)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _softmax_rows(Z, y, rows, lo):
    """Logits → P − onehot(y) in place, row by row; return the summed cross-entropy.
    One exp per logit: the exponentials are kept in Z until they are normalised."""
    loss = 0.0
    K = Z.shape[1]
    for t in range(Z.shape[0]):
        m = Z[t, 0]
        for k in range(1, K):
            m = max(m, Z[t, k])
        label = int(y[rows[lo + t]])
        zl = float(Z[t, label])
        s = 0.0
        for k in range(K):
            e = math.exp(float(Z[t, k] - m))
            Z[t, k] = e
            s += e
        loss += float(m) + math.log(s) - zl
        inv = 1.0 / s
        for k in range(K):
            Z[t, k] *= inv
        Z[t, label] -= 1
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _col_sums(D, out):
    for k in range(D.shape[1]):
        out[k] = 0
    for t in range(D.shape[0]):
        for k in range(D.shape[1]):
            out[k] += D[t, k]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _relu_mask(dA, A):
    for t in range(dA.shape[0]):
        for k in range(dA.shape[1]):
            if A[t, k] <= 0:
                dA[t, k] = 0


@njit(cache=True, nogil=True)
def _backward_rest(params, target, sizes, act, dbuf, nb, cap):
    """From D = P − onehot in the last act block down to layer 0: writes gW_l, gb_l
    for l ≥ 1 and gb_0 into ``target``; returns dZ_0 (nb, sizes[1]) for the caller's
    input-layer weight gradient."""
    L = sizes.shape[0] - 1
    half = dbuf.shape[0] // 2
    D = _act(act, sizes, L - 1, nb, cap)
    for l in range(L - 1, 0, -1):
        A = _act(act, sizes, l - 1, nb, cap)
        np.dot(A.T, D, _weight(target, sizes, l))
        _col_sums(D, _bias(target, sizes, l))
        off = half * ((L - 1 - l) % 2)
        dA = dbuf[off: off + nb * sizes[l]].reshape((nb, sizes[l]))
        np.dot(D, _weight(params, sizes, l).T, dA)
        _relu_mask(dA, A)
        D = dA
    _col_sums(D, _bias(target, sizes, 0))
    return D


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _gather(X, rows, lo, nb, xb):
    """xb[t] = X[rows[lo + t]] for t < nb, in 64-byte vectors (simd.py)."""
    d = X.shape[1]
    n = lanes(xb)
    for t in range(nb):
        i = rows[lo + t]
        for j in range(0, d - n + 1, n):
            vstore(xb, (t, j), vload(X, (i, j)))
        j = d - d % n
        vstore_tail(xb, (t, j), d, vload_tail(X, (i, j), d))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _add_into(dst, src):
    for j in range(dst.shape[0]):
        dst[j] += src[j]


@njit(cache=True, nogil=True)
def mlp_loss_grad_dense(X, y, rows, params, grad, sizes, act, dbuf, gtmp, xb):
    """Summed cross-entropy over ``rows`` (returned, float64); the summed gradient
    overwrites ``grad``. Scratch as in the module docstring; cap = xb.size // d."""
    d = X.shape[1]
    cap = xb.shape[0] // d
    m = rows.shape[0]
    loss = 0.0
    for j in range(grad.shape[0]):
        grad[j] = 0
    lo = 0
    first = True
    while lo < m:
        nb = min(cap, m - lo)
        target = grad if first else gtmp
        Xb = xb[: nb * d].reshape((nb, d))
        _gather(X, rows, lo, nb, Xb)
        np.dot(Xb, _weight(params, sizes, 0), _act(act, sizes, 0, nb, cap))
        _forward_rest(params, sizes, act, nb, cap)
        loss += _softmax_rows(_act(act, sizes, sizes.shape[0] - 2, nb, cap), y, rows, lo)
        D0 = _backward_rest(params, target, sizes, act, dbuf, nb, cap)
        np.dot(Xb.T, D0, _weight(target, sizes, 0))
        if not first:
            _add_into(grad, gtmp)
        first = False
        lo += nb
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _argmax_hits(P, y, rows, lo):
    hits = 0
    for t in range(P.shape[0]):
        best = 0
        for k in range(1, P.shape[1]):
            if P[t, k] > P[t, best]:
                best = k
        if best == int(y[rows[lo + t]]):
            hits += 1
    return hits


@njit(cache=True, nogil=True)
def mlp_correct_dense(X, y, rows, params, sizes, act, xb):
    """Number of ``rows`` whose arg-max output equals the class label."""
    d = X.shape[1]
    cap = xb.shape[0] // d
    m = rows.shape[0]
    hits = 0
    lo = 0
    while lo < m:
        nb = min(cap, m - lo)
        Xb = xb[: nb * d].reshape((nb, d))
        _gather(X, rows, lo, nb, Xb)
        np.dot(Xb, _weight(params, sizes, 0), _act(act, sizes, 0, nb, cap))
        _forward_rest(params, sizes, act, nb, cap)
        hits += _argmax_hits(_act(act, sizes, sizes.shape[0] - 2, nb, cap), y, rows, lo)
        lo += nb
    return hits


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _csr_times_w0(data, indices, indptr, rows, lo, W0, Z):
    """Z[t] = Σ_p data[p] · W0[indices[p]] over the nonzeros of row rows[lo + t]."""
    h = W0.shape[1]
    for t in range(Z.shape[0]):
        for k in range(h):
            Z[t, k] = 0
        i = rows[lo + t]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            j = indices[p]
            for k in range(h):
                Z[t, k] += v * W0[j, k]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _csr_t_times_d(data, indices, indptr, rows, lo, D, gW0):
    """gW0 = X_chunkᵀ · D for CSR rows (gW0 overwritten)."""
    h = gW0.shape[1]
    for j in range(gW0.shape[0]):
        for k in range(h):
            gW0[j, k] = 0
    for t in range(D.shape[0]):
        i = rows[lo + t]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            j = indices[p]
            for k in range(h):
                gW0[j, k] += v * D[t, k]


@njit(cache=True, nogil=True)
def mlp_loss_grad_csr(data, indices, indptr, y, rows, params, grad, sizes, act, dbuf, gtmp, cap):
    """CSR version of ``mlp_loss_grad_dense`` (chunks of at most ``cap`` rows)."""
    m = rows.shape[0]
    loss = 0.0
    for j in range(grad.shape[0]):
        grad[j] = 0
    lo = 0
    first = True
    while lo < m:
        nb = min(cap, m - lo)
        target = grad if first else gtmp
        _csr_times_w0(data, indices, indptr, rows, lo, _weight(params, sizes, 0),
                      _act(act, sizes, 0, nb, cap))
        _forward_rest(params, sizes, act, nb, cap)
        loss += _softmax_rows(_act(act, sizes, sizes.shape[0] - 2, nb, cap), y, rows, lo)
        D0 = _backward_rest(params, target, sizes, act, dbuf, nb, cap)
        _csr_t_times_d(data, indices, indptr, rows, lo, D0, _weight(target, sizes, 0))
        if not first:
            _add_into(grad, gtmp)
        first = False
        lo += nb
    return loss


@njit(cache=True, nogil=True)
def mlp_correct_csr(data, indices, indptr, y, rows, params, sizes, act, cap):
    """Number of CSR ``rows`` whose arg-max output equals the class label."""
    m = rows.shape[0]
    hits = 0
    lo = 0
    while lo < m:
        nb = min(cap, m - lo)
        _csr_times_w0(data, indices, indptr, rows, lo, _weight(params, sizes, 0),
                      _act(act, sizes, 0, nb, cap))
        _forward_rest(params, sizes, act, nb, cap)
        hits += _argmax_hits(_act(act, sizes, sizes.shape[0] - 2, nb, cap), y, rows, lo)
        lo += nb
    return hits
