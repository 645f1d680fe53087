"""Test references: the full-batch solver for L2-regularised logistic regression (scipy
L-BFGS, float64) and plain-numpy loss/gradient references of every kernel (moved here from
the production kernel modules: only the tests use them)."""

import numpy as np
from scipy.optimize import minimize


def logreg_objective(params, X, y, l2):
    """f(w) = mean(softplus(z) - y z) + l2/2 ||w[:d]||^2 and its gradient, float64."""
    w, b = params[:-1], params[-1]
    z = X @ w + b
    n = X.shape[0]
    f = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w
    r = (0.5 * (1.0 + np.tanh(0.5 * z)) - y) / n
    g = np.concatenate([X.T @ r + l2 * w, [r.sum()]])
    return f, g


def logreg_optimum(X, y, l2, gtol=1e-7):
    """Minimiser and minimum of the objective; asserts the gradient norm is < 1e-6."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    res = minimize(logreg_objective, np.zeros(X.shape[1] + 1), args=(X, y, l2), jac=True,
                   method="L-BFGS-B", options={"gtol": gtol, "ftol": 0.0, "maxiter": 10_000})
    f, g = logreg_objective(res.x, X, y, l2)
    assert np.linalg.norm(g) < 1e-6, f"reference solver did not converge: |g| = {np.linalg.norm(g)}"
    return res.x, f


def accuracy(params, X, y):
    z = np.asarray(X, np.float64) @ params[:-1] + params[-1]
    return float(np.mean((z > 0) == (y == 1)))


def binary_problem(directory, n_train, n_test, d, seed, l2):
    """Write a synthetic binary train/test pair into ``directory`` and solve it:
    {"train", "test", "f_star", "acc_star", "dir"} (the reference optimum and its accuracy)."""
    import os

    import h5py

    from mpidml.data.synth import make_binary_dense

    train, test = os.path.join(directory, "train.h5"), os.path.join(directory, "test.h5")
    make_binary_dense(train, n_train, d, seed=seed, stream=0)
    make_binary_dense(test, n_test, d, seed=seed, stream=1)
    with h5py.File(train) as f:
        w_star, f_star = logreg_optimum(f["X"][:], f["y"][:], l2)
    with h5py.File(test) as f:
        acc = accuracy(w_star, f["X"][:], f["y"][:])
    return {"train": train, "test": test, "f_star": f_star, "acc_star": acc, "dir": directory}


def logreg_loss_grad_reference(X, y, w):
    """Plain numpy reference (float64): summed loss and gradient over all rows of X."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = np.asarray(w, np.float64)
    z = X @ w[:-1] + w[-1]
    loss = np.sum(np.logaddexp(0.0, z) - y * z)
    r = 1.0 / (1.0 + np.exp(-z)) - y
    return loss, np.concatenate([X.T @ r, [r.sum()]])


def lsq_loss_grad_reference(X, y, w):
    """Plain numpy reference (float64): summed ½ squared error and gradient."""
    X = np.asarray(X, np.float64)
    w = np.asarray(w, np.float64)
    r = X @ w[:-1] + w[-1] - np.asarray(y, np.float64)
    return 0.5 * np.sum(r * r), np.concatenate([X.T @ r, [r.sum()]])


def mlp_loss_grad_reference(X, y, params, sizes):
    """Plain numpy reference (float64): summed cross-entropy and flat gradient."""
    X = np.asarray(X, np.float64)
    p = np.asarray(params, np.float64)
    Ws, bs, off = [], [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        Ws.append(p[off: off + a * b].reshape(a, b))
        bs.append(p[off + a * b: off + a * b + b])
        off += a * b + b
    acts = [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        Z = acts[-1] @ W + b
        acts.append(np.maximum(Z, 0) if l < len(Ws) - 1 else Z)
    Z = acts[-1]
    m = Z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))
    yi = np.asarray(y).astype(np.int64)
    idx = np.arange(len(yi))
    loss = np.sum(lse - Z[idx, yi])
    D = np.exp(Z - lse[:, None])
    D[idx, yi] -= 1
    grads = []
    for l in range(len(Ws) - 1, -1, -1):
        grads.append(((acts[l].T @ D).ravel(), D.sum(axis=0)))
        if l > 0:
            D = (D @ Ws[l].T) * (acts[l] > 0)
    flat = [g for pair in reversed(grads) for g in pair]
    return loss, np.concatenate(flat)


def softmax_loss_grad_reference(X, y, w, K):
    """Plain numpy reference (float64): summed loss and flat gradient over all rows."""
    X = np.asarray(X, np.float64)
    w = np.asarray(w, np.float64)
    d = X.shape[1]
    W, b = w[: d * K].reshape(d, K), w[d * K:]
    Z = X @ W + b
    m = Z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))
    yi = np.asarray(y).astype(np.int64)
    loss = np.sum(lse - Z[np.arange(len(yi)), yi])
    R = np.exp(Z - lse[:, None])
    R[np.arange(len(yi)), yi] -= 1.0
    return loss, np.concatenate([(X.T @ R).ravel(), R.sum(axis=0)])
