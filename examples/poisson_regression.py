"""Bring your own model: Poisson regression with a numba kernel, trained by mpidml, checked
against scikit-learn's ``PoissonRegressor``.

    mpiexec -n 2 python examples/poisson_regression.py [--n 4000] [--algo sync] [--json]

Written against the public API only (``mpidml.Model``, ``mpidml.fit``,
``mpidml.data.writer.write_dense``). Rank 0 writes a small synthetic count data set
(``y ~ Poisson(exp(x.w + b))``); every rank trains the model below on its own rows with
full-batch Nesterov gradient descent; rank 0 fits ``PoissonRegressor`` on all rows and
prints the comparison.

The problem both solve, over n rows (log link, intercept not penalised)::

    f(w, b) = (1/n) sum_i [exp(z_i) - y_i z_i] + (l2/2) |w|^2,     z_i = x_i . w + b

which is scikit-learn's objective (half the mean Poisson deviance + alpha/2 |w|^2) up to a
constant in y, with ``alpha = l2``. It is strictly convex, so there is one solution.

Tolerance: every coefficient and the intercept within 1e-6 (absolute) of scikit-learn's,
the objective within 1e-10, and every predicted count (``predict``) within 1e-6
(relative). Why: both are iterative solvers of the same smooth, strictly convex problem,
stopped at finite precision (scikit-learn's lbfgs at tol=1e-10; mpidml after 300
full-batch Nesterov steps); at p = 1, 2, 3 they agree to ~1e-9 in the coefficients, so
1e-6 leaves room for rounding and for the order of the global gradient's sum at each p,
while any real mistake in the loss, the gradient or the averaging over ranks (a wrong
sign, a missing 1/n, a rank's rows counted twice) moves the solution by far more.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile

import numpy as np
from mpi4py import MPI
from numba import njit

import mpidml
from mpidml.data.writer import write_dense

TOL_COEF = 1e-6         # absolute, every coefficient and the intercept
TOL_OBJECTIVE = 1e-10   # absolute, on f(w, b)
TOL_PREDICT = 1e-6      # relative, every row's predicted count


@njit(cache=True)
def poisson_loss_grad(X, y, rows, params, grad):
    """Sum over ``rows`` of exp(z) - y z (returned); its gradient summed into ``grad``."""
    d = X.shape[1]
    grad[:] = 0.0
    loss = 0.0
    for i in rows:
        z = params[d]
        for j in range(d):
            z += X[i, j] * params[j]
        mu = math.exp(z)
        r = mu - y[i]
        loss += mu - y[i] * z
        for j in range(d):
            grad[j] += r * X[i, j]
        grad[d] += r
    return loss


@njit(cache=True)
def poisson_sq_error(X, y, rows, params):
    """Sum over ``rows`` of (exp(z) - y)^2: the RMSE of the predicted mean."""
    d = X.shape[1]
    total = 0.0
    for i in rows:
        z = params[d]
        for j in range(d):
            z += X[i, j] * params[j]
        e = math.exp(z) - y[i]
        total += e * e
    return total


class Poisson(mpidml.Model):
    """Poisson regression, log link: parameters [w (d) | b] in one flat buffer."""

    label_mode = "real"      # counts are real labels to the loader
    metric_name = "rmse"

    def __init__(self, d, dtype=np.float64, l2=1e-3):
        super().__init__(dtype, l2)
        self.d = int(d)
        self.nparams = self.d + 1
        self._weight_slices = [slice(0, self.d)]   # the base class's L2 term covers w, not b

    def views(self, params):
        return {"weight": params[: self.d], "bias": params[self.d:]}

    def loss_grad_sum(self, X, y, rows, params, grad):
        return poisson_loss_grad(X, y, rows, params, grad)

    def metric_sum(self, X, y, rows, params):
        return poisson_sq_error(X, y, rows, params)

    def predict(self, X, params):
        """The predicted mean count exp(x.w + b) of every row of a dense ``X``."""
        return np.exp(X @ params[: self.d] + params[self.d])


def make_counts(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * 0.5
    w = rng.standard_normal(d) * 0.5
    y = rng.poisson(np.exp(X @ w + 0.5)).astype(np.float64)
    return X, y


def objective(X, y, w, b, l2):
    z = X @ w + b
    return float(np.mean(np.exp(z) - y * z) + 0.5 * l2 * w @ w)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=300, help="full-batch steps")
    ap.add_argument("--algo", default="sync")
    ap.add_argument("--json", action="store_true", help="rank 0 also prints the comparison as one JSON line")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    folder = tempfile.mkdtemp(prefix="mpidml-poisson-") if rank == 0 else None
    folder = comm.bcast(folder)
    path = f"{folder}/counts.h5"
    X, y = make_counts(args.n, args.d, seed=5)
    if rank == 0:
        write_dense(path, X, y)
    comm.Barrier()
    try:
        result = mpidml.fit(Poisson, data=path, algo=args.algo, epochs=args.epochs, batch_size=args.n,
                            optimizer="nesterov", momentum=0.9, lr=0.5, lr_schedule="constant", l2=args.l2,
                            quiet=True)
    finally:
        comm.Barrier()
        if rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
    if rank != 0:
        return 0
    from sklearn.linear_model import PoissonRegressor

    ref = PoissonRegressor(alpha=args.l2, tol=1e-10, max_iter=10_000).fit(X, y)
    theta = result.params
    w, b = theta[: args.d], float(theta[args.d])
    mine, theirs = result.model.predict(X, theta), ref.predict(X)
    report = {
        "ranks": comm.Get_size(), "algo": args.algo,
        "coef_max_abs_diff": float(np.max(np.abs(w - ref.coef_))),
        "intercept_abs_diff": abs(b - float(ref.intercept_)),
        "objective_mpidml": result.summary["objective"],
        "objective_sklearn": objective(X, y, ref.coef_, float(ref.intercept_), args.l2),
        "objective_mpidml_recomputed": objective(X, y, w, b, args.l2),
        "predict_max_rel_diff": float(np.max(np.abs(mine - theirs) / theirs)),
        "params_identical": bool(result.summary.get("params_identical", True)),
    }
    report["objective_abs_diff"] = abs(report["objective_mpidml_recomputed"] - report["objective_sklearn"])
    report["match"] = bool(report["coef_max_abs_diff"] <= TOL_COEF and report["intercept_abs_diff"] <= TOL_COEF
                           and report["objective_abs_diff"] <= TOL_OBJECTIVE
                           and report["predict_max_rel_diff"] <= TOL_PREDICT)
    print(f"Poisson regression, {comm.Get_size()} rank(s), --algo {args.algo}, n={args.n}, d={args.d}, "
          f"l2={args.l2}")
    print(f"  objective  mpidml {report['objective_mpidml_recomputed']:.10f}   "
          f"sklearn PoissonRegressor {report['objective_sklearn']:.10f}")
    print(f"  max |coef diff| {report['coef_max_abs_diff']:.2e}, |intercept diff| {report['intercept_abs_diff']:.2e}"
          f" (tolerance {TOL_COEF:g}); max relative predict diff {report['predict_max_rel_diff']:.2e}")
    print("  MATCH" if report["match"] else "  MISMATCH")
    if args.json:
        print(json.dumps(report))
    return 0 if report["match"] else 1


if __name__ == "__main__":
    sys.exit(main())
