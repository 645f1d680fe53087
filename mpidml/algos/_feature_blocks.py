"""The column-block model and loader behind ``--algo feature_parallel``
(``algos/feature_parallel.py`` explains the algorithm). Kept apart so that importing
the algorithm registry does not compile kernels."""

from __future__ import annotations

import numpy as np

from ..data.layout import CSRMatrix
from ..kernels.logreg import (
    logreg_block_grad_csr,
    logreg_block_grad_dense,
    logreg_correct_margins,
    logreg_partial_margins_csr,
    logreg_partial_margins_dense,
    logreg_residuals,
    new_scratch,
)
from ..models import Model

__all__ = ["BlockLogReg", "load_blocks"]


class BlockLogReg(Model):
    """The logistic-regression model as one rank of a column-block split sees it.

    Parameters ``[w[c0:c1] | b]`` (``nparams`` = c1 − c0 + 1); ``nparams_full`` = d + 1
    is the whole model's. ``loss_grad_sum`` and ``metric_sum`` are COLLECTIVE over
    ``comm``: every rank passes the same ``rows`` (its own columns of them) and gets the
    loss of the whole model (the same on every rank) and the gradient of its block.
    """

    label_mode = "binary"
    metric_name = "accuracy"

    def __init__(self, comm, d: int, columns: tuple[int, int], dtype=np.float32, l2: float = 1e-4):
        super().__init__(dtype, l2)
        self.comm = comm
        self.d = int(d)
        self.columns = (int(columns[0]), int(columns[1]))
        self.width = self.columns[1] - self.columns[0]
        self.nparams = self.width + 1
        self.nparams_full = self.d + 1
        self._weight_slices = [slice(0, self.width)]
        self._scratch = new_scratch(self.dtype)
        self._z = np.empty(0, self.dtype)
        self.coll = None          # the run's Collectives (FeatureParallel binds it)

    def collectives(self):
        if self.coll is None:
            from ..comm.collectives import Collectives

            self.coll = Collectives(self.comm)
        return self.coll

    def margins(self, X, rows, params, reduce: bool = True) -> np.ndarray:
        """Σ over ranks of the partial margins of ``rows`` (no bias), in a model-owned
        buffer; ``reduce=False``: this rank's partial margins only (no communication)."""
        m = rows.shape[0]
        if self._z.size < m:
            self._z = np.empty(max(m, 2 * self._z.size), self.dtype)
        z = self._z[:m]
        w = params[:self.width]
        if isinstance(X, CSRMatrix):
            logreg_partial_margins_csr(X.data, X.indices, X.indptr, rows, w, z)
        else:
            logreg_partial_margins_dense(X, rows, w, z)
        if reduce and self.comm.Get_size() > 1:
            self.collectives().allreduce(z)
        return z

    def loss_grad_sum(self, X, y, rows, params, grad, reduce: bool = True) -> float:
        z = self.margins(X, rows, params, reduce)
        loss = logreg_residuals(z, y, rows, params[self.width], self._scratch)
        if isinstance(X, CSRMatrix):
            logreg_block_grad_csr(X.data, X.indices, X.indptr, rows, z, grad)
        else:
            logreg_block_grad_dense(X, rows, z, grad)
        return loss

    def metric_sum(self, X, y, rows, params, reduce: bool = True) -> float:
        z = self.margins(X, rows, params, reduce)
        return logreg_correct_margins(z, y, rows, params[self.width])

    def warm_up(self, X, y) -> None:
        """Compile the kernels on this rank alone (no collective)."""
        rows = np.arange(min(2, X.shape[0]), dtype=np.int64)
        params = self.init_params()
        self.loss_grad_sum(X, y, rows, params, np.empty_like(params), reduce=False)
        self.metric_sum(X, y, rows, params, reduce=False)

    def owned(self, size: int, rank: int) -> tuple[int, int]:
        """This rank's slice of the full vector ``[w | b]``: its columns, plus the bias on
        the last rank (so the ranks' slices tile [0, d + 1) exactly once)."""
        c0, c1 = self.columns
        return c0, c1 + (1 if rank == size - 1 else 0)


def load_blocks(comm, cfg, log=None):
    """Collective: this rank's column block of the training set (every row) and of the
    test set (``cfg.test``, or None); one error message on every rank if any fails."""
    from ..data.loader import LabelPlan, announce, load_feature_block
    from ..runtime.errors import MpidmlError, fail_together

    size, rank = comm.Get_size(), comm.Get_rank()

    def load():
        train = load_feature_block(cfg.data, size, rank, "binary")
        test = load_feature_block(cfg.test, size, rank, "binary") if cfg.test else None
        if test is not None and test.dataset.d != train.dataset.d:
            raise MpidmlError(f"{cfg.test}: /X has {test.dataset.d} features but {cfg.data} has "
                              f"{train.dataset.d}")
        if train.dataset.d < size:
            raise MpidmlError(f"--algo feature_parallel: {cfg.data} has {train.dataset.d} features, "
                              f"fewer than the {size} ranks (each rank needs a column block)")
        return train, test

    train, test = fail_together(comm, "loading the column blocks", load)
    if rank == 0 and log is not None and train.labels_mapped:
        announce(log, train.dataset, LabelPlan("binary", map_pm1=True), 0)
    return train, test
