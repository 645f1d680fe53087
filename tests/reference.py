"""Full-batch reference solver for L2-regularised logistic regression (scipy L-BFGS, float64)."""

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
