"""Hogwild (Niu, Recht, Ré & Wright 2011): lock-free parallel SGD over the rows of a
CSR minibatch, for binary logistic regression. Pure @njit, no MPI.

``logreg_hogwild_csr`` runs ``prange`` over the rows: every numba thread takes a
contiguous chunk of them and, row by row, reads the weights it needs, computes the
residual and writes ``w[j] −= step·r·x_j`` for the row's nonzeros (and the bias)
straight into the ONE shared weight vector — no locks, no atomics, no per-thread
gradient buffers. Updates from two threads to the same coordinate can be lost or
computed from a stale read; on sparse data (rows touch few coordinates) such
collisions are rare and SGD tolerates them (the paper's analysis). The result
therefore depends on thread timing when T > 1; with T = 1 the pass is exactly
``logreg_sgd_csr`` (serial per-row SGD, same arithmetic, same order).

The bias (every row updates it) is the one coordinate every thread writes: its lost
updates are the price of taking no lock; the regulariser is applied by the caller
once per minibatch, not per row (``algos/hogwild.py``).
"""

from numba import njit, prange

from ._common import FASTMATH, sparse_dot, uidx
from .logreg import _loss_and_residual

__all__ = ["logreg_hogwild_csr", "logreg_sgd_csr"]


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _sgd_row_csr(data, indices, indptr, y, i, w, step):
    """One SGD step on CSR row ``i`` in place: w −= step·(σ(z) − y)·[x, 1]; returns the
    row's loss at the weights it read."""
    d = w.shape[0] - 1
    a, b = indptr[i], indptr[i + 1]
    z = w[d] + sparse_dot(data, indices, a, b, w)
    loss, r = _loss_and_residual(z, y[i])
    s = w.dtype.type(step * r)
    for p in range(uidx(a), uidx(b)):
        w[uidx(indices[p])] -= s * data[p]
    w[d] -= s
    return loss


@njit(cache=True, nogil=True, parallel=True)
def logreg_hogwild_csr(data, indices, indptr, y, rows, w, step):
    """Hogwild pass over ``rows`` with per-row step size ``step``, on as many threads
    as ``numba.get_num_threads()``; ``w`` (length d + 1) is updated in place without
    locks. Returns the summed loss, each row's at the weights it read (float64)."""
    loss = 0.0
    for t in prange(rows.shape[0]):
        loss += _sgd_row_csr(data, indices, indptr, y, rows[t], w, step)
    return loss


@njit(cache=True, nogil=True)
def logreg_sgd_csr(data, indices, indptr, y, rows, w, step):
    """Serial per-row SGD over ``rows`` in order (the T = 1 reference of the Hogwild pass)."""
    loss = 0.0
    for t in range(rows.shape[0]):
        loss += _sgd_row_csr(data, indices, indptr, y, rows[t], w, step)
    return loss
