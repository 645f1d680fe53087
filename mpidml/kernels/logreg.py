"""Binary logistic regression kernels (dense rows), float32 and float64.

Parameters are one flat vector ``w`` of length ``d + 1``: weights ``w[:d]`` and the
bias ``w[d]``. Labels ``y`` are 0/1 (any numeric dtype). Kernels work on the rows
``rows`` of ``X`` (an index array: a shuffled minibatch is a slice of a permutation,
so no rows are copied) and read each row once (fused forward + backward).

Loss of one row: softplus(z) − y·z with z = x·w[:d] + w[d], computed stably.
Regularisation is not applied here: it is added once to the global mean gradient.
"""

import math

import numpy as np
from numba import njit

__all__ = ["logreg_loss_grad_dense", "logreg_correct_dense"]


@njit(cache=True, nogil=True)
def logreg_loss_grad_dense(X, y, rows, w, grad):
    """Sum over ``rows`` of the logistic loss (returned, float64) and its gradient.

    ``grad`` (length d + 1, dtype of ``w``) is overwritten with the summed gradient
    over the selected rows: Σ (σ(z_i) − y_i)·[x_i, 1]. Nothing is allocated.
    """
    d = X.shape[1]
    for j in range(d + 1):
        grad[j] = 0
    loss = 0.0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = w[d]
        for j in range(d):
            z += X[i, j] * w[j]
        # softplus(z) and sigmoid(z) without overflow for large |z|.
        if z >= 0:
            e = math.exp(-z)
            softplus = z + math.log1p(e)
            prob = 1.0 / (1.0 + e)
        else:
            e = math.exp(z)
            softplus = math.log1p(e)
            prob = e / (1.0 + e)
        yi = y[i]
        loss += softplus - yi * z
        r = prob - yi
        for j in range(d):
            grad[j] += r * X[i, j]
        grad[d] += r
    return loss


@njit(cache=True, nogil=True)
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


def logreg_loss_grad_reference(X, y, w):
    """Plain numpy reference (float64): summed loss and gradient over all rows of X."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    z = X @ w[:-1] + w[-1]
    loss = np.sum(np.logaddexp(0.0, z) - y * z)
    r = 1.0 / (1.0 + np.exp(-z)) - y
    return loss, np.concatenate([X.T @ r, [r.sum()]])
