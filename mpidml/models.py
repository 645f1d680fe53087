"""Models: a kernel plus the shapes of its parameters inside one flat buffer.

Parameters live in ONE contiguous numpy array; named tensors are views into it,
so a collective moves the whole model (or gradient) in one call.
"""

from __future__ import annotations

import numpy as np

from .kernels.logreg import logreg_correct_dense, logreg_loss_grad_dense

__all__ = ["LogReg"]


class LogReg:
    """L2-regularised binary logistic regression on ``d`` dense features.

    Objective over n rows: f(w) = (1/n) Σ_i [softplus(z_i) − y_i z_i] + (l2/2)·‖w[:d]‖²
    (the bias ``w[d]`` is not regularised).
    """

    def __init__(self, d: int, dtype=np.float32, l2: float = 1e-4):
        self.d = int(d)
        self.dtype = np.dtype(dtype)
        self.l2 = float(l2)

    @property
    def nparams(self) -> int:
        return self.d + 1

    def init_params(self) -> np.ndarray:
        """Zero parameters (identical on every rank without communication)."""
        return np.zeros(self.nparams, dtype=self.dtype)

    def views(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Named views into the flat parameter (or gradient) buffer."""
        return {"weight": params[: self.d], "bias": params[self.d:]}

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        """Summed data loss over ``rows`` (returned) and summed gradient into ``grad``."""
        return logreg_loss_grad_dense(X, y, rows, params, grad)

    def correct(self, X, y, rows, params) -> int:
        return logreg_correct_dense(X, y, rows, params)

    def regularizer(self, params) -> float:
        w = params[: self.d]
        return 0.5 * self.l2 * float(np.dot(w, w))

    def add_regularizer_grad(self, params, grad) -> None:
        """grad[:d] += l2 · w, in place."""
        grad[: self.d] += self.dtype.type(self.l2) * params[: self.d]
