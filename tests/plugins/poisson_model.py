"""A user's own model, written against the public ``mpidml.Model`` protocol only:
Poisson regression (log link) with numpy, dense rows.

    loss_i = exp(z_i) - y_i z_i,   z_i = x_i . w + b,   metric: RMSE of the mean exp(z)
"""

import numpy as np

from mpidml import Model


class Poisson(Model):
    label_mode = "real"
    metric_name = "rmse"

    def __init__(self, d, dtype=np.float32, l2=1e-4):
        super().__init__(dtype, l2)
        self.d = int(d)
        self.nparams = self.d + 1
        self._weight_slices = [slice(0, self.d)]

    def _margins(self, X, rows, params):
        return X[rows] @ params[: self.d] + params[self.d]

    def loss_grad_sum(self, X, y, rows, params, grad):
        Xb = X[rows]
        z = Xb @ params[: self.d] + params[self.d]
        mu = np.exp(z)
        r = (mu - y[rows]).astype(self.dtype)
        grad[: self.d] = Xb.T @ r
        grad[self.d] = r.sum()
        return float(np.sum(mu - y[rows] * z))

    def metric_sum(self, X, y, rows, params):
        return float(np.sum((np.exp(self._margins(X, rows, params)) - y[rows]) ** 2))
