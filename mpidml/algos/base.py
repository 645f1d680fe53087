"""The interface every training algorithm implements, and the control channel they share.

A training step on every rank is: the loop computes this rank's *summed* loss and
gradient over its part of the step's minibatch into ``algo.grad`` (at the parameters
``algo.params``), then calls ``algo.step(...)``. The algorithm decides what to
exchange, with whom and when, and applies the optimizer. It returns an ``Outcome``
on the steps where the ranks agreed on something global (a *control point*), else
``None``.

Control points carry four named numbers per rank (``comm.collectives.CONTROL``: loss
sum, sample count, "a signal asked me to stop", "my gradient went NaN/inf") fused into the algorithm's own collective
where it has one (sync: every step; local SGD / EASGD: every τ steps) or sent alone
as a tiny allreduce every ``control_every`` steps (gossip, push-sum, CHOCO). So a
NaN on one rank or a SIGTERM to one rank stops every rank at the same step, and a
decentralized algorithm never waits on a global collective between control points.

Algorithms communicate only through ``self.coll`` (``comm.collectives.Collectives``, one
per run: its byte counters, debug mode and the measured allreduce policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..comm.control import CONTROL, ControlValues

if TYPE_CHECKING:
    from ..comm.collectives import Collectives
from ..runtime.errors import EXIT_NUMERIC, CollectiveError

__all__ = ["Algorithm", "AlgoContext", "Control", "Outcome", "CONTROL", "CONTROL_SIZE", "fixed_rows"]

CONTROL_SIZE = CONTROL.size   # the named slots [loss, count, stop, nan] (comm.collectives.CONTROL)


@dataclass
class Outcome:
    """What every rank agreed on at a control point."""

    loss: float      # summed loss since the previous control point, over all ranks
    count: float     # samples behind it
    stop: bool       # some rank asked to stop (SIGTERM/SIGUSR1): all stop now
    end_epoch: bool = False   # asynchronous algorithms: the epoch is over for this rank


@dataclass
class AlgoContext:
    """What an algorithm gets: the communicator, the model, its flat parameter buffer
    and optimizer, the configuration (``TrainConfig``) and the run's ``Collectives``
    (a new one on ``comm`` when not given)."""

    comm: Any           # mpi4py.MPI.Intracomm
    model: Any          # the mpidml.Model protocol
    params: np.ndarray
    opt: Any            # mpidml.optim optimizer
    cfg: Any            # engine.config.TrainConfig
    rows: int | None = None     # this rank's training rows (admm weighs its z-update by them)
    coll: Collectives | None = field(default=None)

    def __post_init__(self):
        if self.coll is None:
            from ..comm.collectives import Collectives  # (MPI is imported only when a run starts)
            self.coll = Collectives(self.comm)

    @property
    def dtype(self) -> np.dtype:
        return self.params.dtype


class Control:
    """Stop / NaN agreement and loss reporting between control points."""

    def __init__(self, coll: Collectives):
        self.coll = coll
        self.comm = coll.comm
        self.loss = 0.0
        self.count = 0.0
        self.bad_step = -1          # first step whose local loss/gradient was not finite
        self.hint = ""

    def note(self, step: int, loss: float, count: float, grad: np.ndarray) -> None:
        """Record this rank's step (cheap: one pass of ``np.sum`` over the gradient)."""
        self.loss += loss
        self.count += count
        if self.bad_step < 0 and not math.isfinite(loss + float(np.sum(grad))):
            self.bad_step = step

    def values(self, stop: bool) -> ControlValues:
        """This rank's control numbers."""
        return ControlValues(self.loss, self.count, 1.0 if stop else 0.0, 1.0 if self.bad_step >= 0 else 0.0)

    def pack(self, out: np.ndarray, stop: bool) -> None:
        """Write this rank's control numbers into ``out`` (the ``CONTROL`` slots at the
        tail of a sum-reduced buffer)."""
        CONTROL.pack(out, self.values(stop))

    def settle(self, reduced: np.ndarray | ControlValues, step: int) -> Outcome:
        """After the reduction (the ``CONTROL`` slots, or the values): same verdict on
        every rank. Raises on NaN/inf anywhere."""
        got = reduced if isinstance(reduced, ControlValues) else CONTROL.unpack(reduced)
        if got.nan > 0:
            bad = self.comm.allgather(self.bad_step)
            failures = [(r, f"loss or gradient is NaN/inf at step {s}{self.hint}")
                        for r, s in enumerate(bad) if s >= 0]
            raise CollectiveError("training", failures or [(0, f"NaN/inf at step {step}")],
                                  exit_code=EXIT_NUMERIC)
        self.take()
        return Outcome(got.loss, got.count, got.stop > 0)

    def raise_if_bad_anywhere(self) -> None:
        """Collective (asynchronous algorithms, at epoch ends): raise on every rank if any
        rank saw a NaN/inf since the start, naming each such rank and its first bad step."""
        bad = self.comm.allgather(self.bad_step)
        if any(b >= 0 for b in bad):
            raise CollectiveError("training", [(r, f"loss or gradient is NaN/inf at step {b}{self.hint}")
                                               for r, b in enumerate(bad) if b >= 0], exit_code=EXIT_NUMERIC)

    def take(self) -> tuple[float, float]:
        """This rank's loss sum and count since the last control point; restarts both."""
        got = (self.loss, self.count)
        self.loss = self.count = 0.0
        return got

    def exchange(self, step: int, stop: bool) -> Outcome:
        """A control point on its own: one 32-byte allreduce (counted)."""
        return self.settle(self.coll.control_exchange(self.values(stop)), step)


def fixed_rows(cfg) -> None:
    """``check_config`` helper: the algorithm needs each rank's rows fixed and in memory."""
    if cfg.partition != "contiguous" or cfg.memory_budget:
        raise ValueError(f"--algo {cfg.algo} needs each rank's rows fixed and in memory: it cannot be "
                         f"combined with --partition {cfg.partition} or --memory-budget")


class Algorithm:
    """Base class: one training algorithm behind the small interface train.py uses.

    Subclasses set ``name`` and implement ``step``; most override ``consensus`` (the
    model that is evaluated and saved) and the state methods (checkpoints).
    """

    name = "base"
    #: the algorithm's own options: a dataclass of ``mpidml.options.knob`` fields (set by
    #: ``@register(name, config=...)``); they become ``--flags``, TOML keys and fields of
    #: ``TrainConfig``
    Config: type | None = None
    #: True on a rank that holds no data and only answers others (asynchronous algorithms,
    #: whose loop shape ``run_epoch`` picks: see ``asynchronous_epoch``)
    serves = False
    #: what ``consensus()`` is, for the final log line
    consensus_kind = "the ranks' mean model"
    #: True when the loop already applied the local step (Hogwild passes: algos/hogwild.py)
    local_applied = False
    #: ``--compress`` codecs apply (the algorithm moves gradients or differences through one)
    accepts_compression = False
    #: ``--hogwild-threads`` may replace the local minibatch step (model-averaging algorithms)
    accepts_hogwild = False
    #: every rank holds every row (column-block model parallelism): the same row order on
    #: every rank, and no per-rank row split
    rows_replicated = False
    #: ``build_model`` ignores the configured model (feature_parallel's column blocks): a
    #: user's model cannot be trained by it
    builds_own_model = False
    #: ``--on-failure shrink`` can continue this algorithm on the survivors of a dead rank
    #: (engine/recovery.py: replicated state, broadcast from a survivor)
    survives_failures = False

    # ---- what the engine asks the class before the run (no instance yet) -------------
    @classmethod
    def check_config(cls, cfg) -> None:
        """Raise ``ValueError`` naming the setting if ``cfg`` (a ``TrainConfig``) cannot
        run with this algorithm. Must not change ``cfg``. Default: nothing to check."""

    @classmethod
    def serving_ranks(cls, cfg, size: int) -> int:
        """How many ranks (the last ones) hold no data and only serve the others."""
        return 0

    @classmethod
    def optimizer_name(cls, cfg) -> str:
        """The local optimizer this algorithm runs (default ``--optimizer``)."""
        return cfg.optimizer

    @classmethod
    def load_data(cls, comm, cfg, label_mode: str, log):
        """Collective: ``(train, test)`` shards for a data plan other than row blocks, or
        None for the engine's default (each rank a balanced block of rows)."""
        return None

    @classmethod
    def build_model(cls, comm, cfg, shard, default):
        """The model this algorithm trains; ``default()`` builds the configured one."""
        return default()

    # ---- the epoch's shape -------------------------------------------------------------
    def run_epoch(self, loop, epoch: int) -> int:
        """Run one epoch through ``loop`` (``engine.loop.EpochLoop``), which offers the
        loop shapes; return the stop signal the ranks agreed on (0: none). Default: the
        synchronous step loop over this rank's rows."""
        return loop.step_loop(epoch, order_rank=0 if self.rows_replicated else self.rank)

    def asynchronous_epoch(self, loop, epoch: int) -> int:
        """The loop shape of asynchronous algorithms: serving ranks answer until the epoch
        is done, workers cycle through their rows until told it is over."""
        return loop.serve_loop(epoch) if self.serves else loop.worker_loop(epoch)

    def serve_epoch(self, epoch_samples: float, beat=None) -> bool:
        """Serving ranks (``serves``): answer the workers until the epoch is done; True
        if a worker asked to stop. ``beat()`` is the watchdog's heartbeat."""
        raise NotImplementedError(f"{self.name} has no serving ranks")

    def finish_epoch(self) -> None:
        """Collective, asynchronous algorithms: the epoch-end agreement (NaN verdict)."""

    def evaluate(self, evaluator):
        """Collective: ``(objective, grad_norm, metric, test_loss)`` of the model this
        algorithm evaluates; default: ``evaluator.of_params(self.consensus())``."""
        return evaluator.of_params(self.consensus())

    def __init__(self, ctx: AlgoContext):
        self.ctx = ctx
        self.comm = ctx.comm
        assert ctx.coll is not None      # AlgoContext.__post_init__ made one
        self.coll: Collectives = ctx.coll
        self.rank, self.size = ctx.comm.Get_rank(), ctx.comm.Get_size()
        self.params = ctx.params
        self.model = ctx.model
        self.opt = ctx.opt
        self.cfg = ctx.cfg
        self.npar = ctx.params.size
        self.control = Control(self.coll)
        self.grad = np.zeros(self.npar, dtype=ctx.dtype)   # the loop writes gradient sums here
        self._avg: np.ndarray | None = None

    # ---- the step -------------------------------------------------------------------
    def step(self, step: int, loss: float, count: float, lr: float, stop: bool) -> Outcome | None:
        """``self.grad`` holds this rank's summed gradient over ``count`` samples
        (summed loss ``loss``). Exchange, update, and return an ``Outcome`` at a control point."""
        raise NotImplementedError

    def before_batch(self, pieces) -> Outcome | None:
        """Asynchronous algorithms: called before a worker computes the step's batch
        (``pieces``: its (X, y, rows) parts). An Outcome with ``end_epoch`` ends the epoch
        for this worker before computing. Default: nothing."""
        return None

    def apply_mean(self, g: np.ndarray, count: float, lr: float) -> None:
        """One optimizer step with the mean gradient ``g / count`` (+ regulariser), ``g``
        scaled in place; nothing when ``count`` is 0."""
        if count > 0:
            g *= g.dtype.type(1.0 / count)
            self.model.add_regularizer_grad(self.params, g)
            self.opt.step(g, lr)

    def local_update(self, count: float, lr: float) -> None:
        """One optimizer step on this rank's own mean gradient (nothing if it had no rows)."""
        if self.local_applied:
            return
        self.apply_mean(self.grad, count, lr)

    def control_point(self, step: int, stop: bool, every: int) -> Outcome | None:
        """A stand-alone control exchange every ``every`` steps (decentralized algorithms)."""
        if (step + 1) % max(every, 1) == 0:
            return self.control.exchange(step, stop)
        return None

    # ---- what is evaluated and saved ------------------------------------------------
    def consensus(self) -> np.ndarray:
        """Collective: the model every rank evaluates and saves (identical bits on every
        rank). Default: the replicas are identical already."""
        return self.params

    def average_params(self, x: np.ndarray | None = None) -> np.ndarray:
        """Collective: the mean over ranks of ``x`` (default this rank's parameters)."""
        if self._avg is None:
            self._avg = np.empty(self.npar, dtype=self.params.dtype)
        avg = self._avg
        avg[:] = self.params if x is None else x
        if self.size > 1:
            self.coll.allreduce(avg, "avg")
        return avg

    def disagreement(self) -> float | None:
        """Collective: max over the model-holding ranks of ‖x_i − x̄‖ / ‖x̄‖, x̄ their mean
        (None where replicas are identical)."""
        return None

    def _relative_spread(self) -> float:
        """Collective: the relative spread of the ranks' models. Serving ranks (``serves``:
        the easgd_async centre, ps servers) hold no model of their own and are left out of
        both the mean and the maximum (counting the centre's unused buffer made the
        easgd_async spread ≈ 1 at every epoch, issue 24 item 4)."""
        n = self.npar
        member = not self.serves
        buf = np.zeros(n + 1, dtype=np.float64)       # [Σ x_i over members | number of members]
        if member:
            buf[:n] = self.params
            buf[n] = 1.0
        if self.size > 1:
            self.coll.allreduce(buf)
        mean = buf[:n] / max(buf[n], 1.0)
        dist = float(np.linalg.norm(self.params - mean)) if member else 0.0
        return max(self.comm.allgather(dist)) / max(float(np.linalg.norm(mean)), 1e-30)

    # ---- checkpoints ----------------------------------------------------------------
    #: False for algorithms whose ranks hold different parameters between exchanges
    replicated = True

    def shared_state(self) -> dict[str, np.ndarray]:
        """Collective: arrays identical on every rank (written once). Non-replicated
        algorithms store the consensus model here (what evaluate/predict use)."""
        if self.replicated:
            return {"params": self.params, **self.opt.state()}
        return {"params": self.consensus().copy(), **self.extra_shared_state()}

    def rank_state(self) -> dict[str, np.ndarray]:
        """Arrays that differ between ranks (written per rank)."""
        if self.replicated:
            return self.extra_rank_state()
        return {"params": self.params, **self.opt.state(), **self.extra_rank_state()}

    def extra_shared_state(self) -> dict[str, np.ndarray]:
        return {}

    def extra_rank_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, shared: dict, per_rank: list[dict], same_size: bool) -> None:
        """Restore from a checkpoint. Same rank count: every array as written. Another
        rank count (elastic resume): replicated state is kept; per-rank parameters are
        replaced by the saved consensus model, per-rank optimizer buffers are averaged
        over the old ranks, other per-rank state (residuals, weights) restarts."""
        mine = per_rank[self.rank] if (same_size and per_rank) else None
        if self.replicated:
            self.params[:] = shared["params"]
            self.opt.load_state(shared)
        elif mine is not None:
            self.params[:] = mine["params"]
            self.opt.load_state(mine)
        else:
            self.params[:] = shared["params"]
            if per_rank:
                keys = self.opt.state().keys()
                self.opt.load_state({k: np.mean([r[k] for r in per_rank], axis=0).astype(per_rank[0][k].dtype)
                                     for k in keys})
        self.load_extra(shared, mine)

    def load_extra(self, shared: dict, mine: dict | None) -> None:
        """Algorithm state besides parameters and optimizer (``mine`` None: elastic)."""

    def report(self) -> dict:
        """Collective: algorithm-specific fields for the run's summary record (default none)."""
        return {}

    def describe(self) -> str:
        return self.name
