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

from . import register
from .base import Algorithm, fixed_rows

__all__ = ["BlockLogReg", "FeatureParallel", "load_blocks"]  # noqa: F822 (the first and last: module __getattr__)


def __getattr__(name):
    if name in ("BlockLogReg", "load_blocks"):     # the kernels compile on first use only
        from . import _feature_blocks
        return getattr(_feature_blocks, name)
    raise AttributeError(name)


@register("feature_parallel")
class FeatureParallel(Algorithm):
    rows_replicated = True      # every rank holds every row (its columns of them)
    builds_own_model = True     # the column-block logistic regression
    replicated = False          # the ranks hold different blocks; consensus() assembles them
    consensus_kind = "the model assembled from the column blocks"

    @classmethod
    def check_config(cls, cfg):
        if cfg.model != "logreg":
            raise ValueError(f"--algo feature_parallel splits the columns of a linear model: it needs "
                             f"--model logreg, not {cfg.model}")
        fixed_rows(cfg)

    @classmethod
    def load_data(cls, comm, cfg, label_mode, log):
        from ._feature_blocks import load_blocks
        return load_blocks(comm, cfg, log=log)

    @classmethod
    def build_model(cls, comm, cfg, shard, default):
        from ._feature_blocks import BlockLogReg
        return BlockLogReg(comm, shard.dataset.d, shard.columns, shard.X.dtype, cfg.l2)

    def __init__(self, ctx):
        from ._feature_blocks import BlockLogReg

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

    def evaluate(self, evaluator):
        """Collective: (objective, gradient norm, test accuracy, test loss) of the
        current model, feature-parallel (no rank assembles the weights)."""
        model, params, g = self.model, self.params, self._evalgrad
        test, test_rows = evaluator.test, evaluator.test_rows
        gsum = np.zeros(self.npar, dtype=np.float64)
        loss = count = 0.0
        for X, y, rows in evaluator.training_rows():
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
        from ..engine.evaluation import Evaluation
        return Evaluation(float(objective), math.sqrt(sums[0]), acc, test_loss)

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

