"""``feature_parallel``: model-parallel logistic regression over column blocks of X.

For d too large for one rank. Rank r of p holds EVERY row but only the columns
``feature_columns(d, p, r)`` = [c0, c1) of X (``data.loader.load_feature_block``) and
the matching weights; its parameter buffer is ``[w[c0:c1] | b]`` — 1/p of the weights,
the bias replicated. Every rank takes the same global minibatch B (the row order is
the rank-0 order on every rank). Per step:

    z_r = X_B[:, c0:c1] · w[c0:c1]          (partial margins, length |B|, this rank)
    z   = Σ_r z_r   + b                       (mpidml allreduce of |B| floats: the only traffic)
    ρ   = σ(z) − y                            (identical bits on every rank)
    ∇w[c0:c1] = X_B[:, c0:c1]ᵀ ρ,  ∇b = Σ ρ   (this rank's block of the exact gradient)

so each rank applies exactly its block of the data-parallel update (the L2 term is
per coordinate, so it splits by block too). Bytes per step are |B| floats, not d.

What is evaluated: ``evaluate`` runs feature-parallel as well (margins summed across
ranks; the gradient norm from per-block squared norms, the bias counted once), so no
rank ever holds the full weight vector during training. ``consensus()`` *assembles*
the full vector ``[w | b]`` (each rank writes its block into zeros, one allreduce:
exact) for checkpoints and ``--save-model`` only; the saved model is an ordinary
``logreg`` model. Memory: parameters, gradient and optimizer buffers are d/p + 1 per
rank; ``describe()`` and the metrics header (``model_bytes_per_rank``) report it.

Checkpoints: the shared state is the assembled model; per rank its block, its
optimizer buffers. On another rank count (elastic resume) every rank cuts its new
block out of the assembled model, and its optimizer buffers out of the old ranks'
buffers put back together (the old blocks are ``feature_columns(d, p_old, r)``).
"""

from __future__ import annotations

import math

import numpy as np

from ..data.layout import CSRMatrix
from ..kernels.logreg import (logreg_block_grad_csr, logreg_block_grad_dense, logreg_correct_margins,
                              logreg_partial_margins_csr, logreg_partial_margins_dense, logreg_residuals,
                              new_scratch)
from ..models import Model
from .base import Algorithm

__all__ = ["BlockLogReg", "FeatureParallel", "load_blocks"]


class BlockLogReg(Model):
    """The logistic-regression model as one rank of a column-block split sees it.

    Parameters ``[w[c0:c1] | b]`` (``nparams`` = c1 − c0 + 1); ``nparams_full`` = d + 1
    is the whole model's. ``loss_grad_sum`` and ``metric_sum`` are COLLECTIVE over
    ``comm``: every rank passes the same ``rows`` (its own columns of them) and gets the
    loss of the whole model (the same on every rank) and the gradient of its block.
    """

    label_mode = "binary"
    metric_name = "accuracy"
    rows_replicated = True      # every rank holds every row (train.py: same row order everywhere)

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


class FeatureParallel(Algorithm):
    name = "feature_parallel"
    replicated = False          # the ranks hold different blocks; consensus() assembles them
    consensus_kind = "the model assembled from the column blocks"

    def __init__(self, ctx):
        super().__init__(ctx)
        if not isinstance(self.model, BlockLogReg):
            raise ValueError("--algo feature_parallel needs the column-block model (train.py builds it)")
        self._evalgrad = np.zeros(self.npar, dtype=self.params.dtype)
        self.model.coll = self.coll      # the model's margin allreduce counts in the run's collectives
        self.weights_per_rank = max(self.comm.allgather(self.npar))

    def step(self, step, loss, count, lr, stop):
        # self.grad is this rank's block of the exact global-batch gradient sum, and count
        # the global batch (every rank took the same rows): the block of the sync update.
        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)
        return self.control_point(step, stop, self.cfg.control_every)

    def consensus(self):
        """Collective: the full model ``[w | b]`` (each rank's block written into zeros,
        summed by one allreduce: exact)."""
        a, b = self.model.owned(self.size, self.rank)
        full = np.zeros(self.model.nparams_full, dtype=self.params.dtype)
        full[a:b] = self.params[:b - a]
        if self.size > 1:
            self.coll.allreduce(full)
        return full

    def evaluate(self, source, test, test_rows):
        """Collective: (objective, gradient norm, test accuracy, test loss) of the
        current model, feature-parallel (no rank assembles the weights)."""
        model, params, g = self.model, self.params, self._evalgrad
        gsum = np.zeros(self.npar, dtype=np.float64)
        loss = count = 0.0
        for X, y, rows in source.full():
            loss += model.loss_grad_sum(X, y, rows, params, g)
            gsum += g
            count += len(rows)
        gsum /= max(count, 1)
        model.add_regularizer_grad(params, gsum)
        a, b = model.owned(self.size, self.rank)
        own = gsum[:b - a]        # the bias's gradient is counted on the last rank only
        sums = np.array([float(own @ own), model.regularizer(params)])
        self.coll.allreduce(sums)
        objective = loss / max(count, 1) + sums[1]
        acc = test_loss = None
        if test is not None and test.n:
            acc = model.metric_sum(test.X, test.y, test_rows, params) / test.n
            test_loss = model.loss_grad_sum(test.X, test.y, test_rows, params, g) / test.n
        return float(objective), math.sqrt(sums[0]), acc, test_loss

    def disagreement(self):
        return None

    def load_state(self, shared, per_rank, same_size):
        if same_size and per_rank:
            mine = per_rank[self.rank]
            self.params[:] = mine["params"]
            self.opt.load_state(mine)
            return
        self.params[:self.model.width] = shared["params"][self.model.columns[0]:self.model.columns[1]]
        self.params[-1] = shared["params"][-1]
        if per_rank:        # optimizer buffers: the old blocks put together, then cut anew
            c0, c1 = self.model.columns
            old = len(per_rank)
            state = {}
            for k, now in self.opt.state().items():
                if np.ndim(now) == 0:        # a counter (Adam's t): the same on every old rank
                    state[k] = per_rank[0][k]
                    continue
                parts = [per_rank[r][k][:-1] for r in range(old)]
                full = np.concatenate(parts + [per_rank[-1][k][-1:]])
                state[k] = np.concatenate([full[c0:c1], full[-1:]]).astype(per_rank[0][k].dtype)
            self.opt.load_state(state)

    def describe(self):
        full = self.model.nparams_full
        return (f"feature-parallel logreg ({self.size} column blocks; weights per rank "
                f"{self.weights_per_rank} of {full}, {self.weights_per_rank / full:.3g} of data parallel)")

