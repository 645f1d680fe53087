"""``ps``: parameter-server training over MPI point-to-point — BSP, SSP, ASGD, DC-ASGD.

The last ``--servers K`` ranks are servers: server k owns the k-th contiguous shard of
the flat parameter vector (``shard_rows(nparams, K, k)``) and that shard's optimizer
state. The other W = p − K ranks are workers; they hold the data (the W-way row
partition) and no optimizer. Before each step a worker makes one round trip to every
server (``before_batch``):

    worker → server k:  [clock c, count, lr, control | gradient of step c at the shard's
                         parameters it fetched for step c | the parameters step c + 1 reads]
    server k → worker:  [flag | those parameters' current values]   (when consistency allows)

For dense data (or an MLP) "the parameters" are the whole shard. For CSR data with a
linear model (logreg, lsq, softmax) they are only the ones the batch's touched columns
address (``Model.params_of_columns``): the batch's data gradient is zero elsewhere and its
loss does not read the rest, so this *sparse push/pull* computes exactly what a dense one
would — the L2 term is added on the server, at its current weights. A worker's copy of
untouched parameters is stale, which is harmless until the epoch end refreshes it. The
summary's ``pull_fraction`` is the share of the shards the replies carried.

Consistency (``--staleness s``; Ho et al. 2013, "More effective distributed ML via a
stale synchronous parallel parameter server"). A worker's *clock* is the number of
pushes it has made in this epoch. A worker that pushed clock c gets its reply (the
parameters for step c + 1) only when every worker still in the epoch has pushed at
least c − s: so no worker is ever more than s clocks ahead of the slowest (the gap
c − min is recorded at every reply: ``clock_gap_max`` in the summary).

- ``s = 0`` (BSP): the server *sums* the W pushes of a clock in worker order and applies
  one optimizer step with the mean gradient — exactly the update of ``--algo sync`` with
  W ranks (equal to rounding: the sum order differs from the ring's).
- ``s > 0`` (SSP) and ``inf`` (ASGD): each push is applied when it arrives, as its own
  optimizer step on that worker's mean gradient with learning rate lr / W (the linear
  scaling rule: a push carries 1/W of the global batch).
- DC-ASGD (``--dc-lambda λ > 0``; Zheng et al. 2017): the server keeps, per worker, the
  values it last sent that worker (w_bak) and compensates the delayed data gradient before
  applying it: g ← g + λ · g ⊙ g ⊙ (w_now − w_bak); the L2 term, computed on the server at
  w_now, is not delayed. Costs W copies of the shard per server.

*Gradient staleness* — the number of pushes a server applied between sending a worker
its parameters and receiving the gradient computed from them — is histogrammed on every
server (``staleness_histogram`` in the summary; 0 everywhere for s = 0).

Epochs: as in ``easgd_async``, an epoch ends when the workers together have pushed n
samples, counted by the first server, which then answers "epoch over" (or "stop", for a
signal or a NaN report) to each worker at its next reply and to every worker it was
holding back; a worker told so sends a short "bye" to the other servers, which stop
waiting for it (a retired worker no longer holds anyone back: it pushes nothing more).
Then ``finish_epoch`` (a collective): the NaN verdict, and every server broadcasts its
shard, so all ranks hold the same fresh model (evaluated, checkpointed, and the start of
the next epoch; clocks restart at 0). Checkpoints are written at epoch ends only; the
optimizer state is assembled from the servers' shards into the checkpoint, so resume
works on other rank and server counts (elastic). Per-worker state (clocks, w_bak) is
rebuilt at each epoch start and not saved.

Servers and waiting workers poll politely (``comm.p2p``): on an oversubscribed machine a
busy-polling server would take the CPU from the workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..comm.tags import Tag
from ..options import knob
from . import register
from .base import CONTROL, Algorithm, Outcome

__all__ = ["ParameterServer", "SSPClocks", "parse_staleness"]

_TAG_PUSH, _TAG_REPLY, _TAG_BYE = int(Tag.PS_PUSH), int(Tag.PS_REPLY), int(Tag.PS_BYE)
_CTRL = 3                                        # meta[3:7] holds the CONTROL slots
_META_STOP, _META_NAN = _CTRL + CONTROL.offset("stop"), _CTRL + CONTROL.offset("nan")
_END_EPOCH, _STOP = 1.0, 2.0


def _count(hist: np.ndarray, value: int) -> np.ndarray:
    """``hist[value] += 1``, growing the histogram as needed."""
    if value >= hist.size:
        hist = np.concatenate([hist, np.zeros(value + 1 - hist.size, dtype=hist.dtype)])
    hist[value] += 1
    return hist


def parse_staleness(text) -> float:
    """``--staleness``: a non-negative integer, or ``inf`` for fully asynchronous SGD."""
    s = str(text).strip().lower()
    if s in ("inf", "infinity", "async", "none"):
        return math.inf
    try:
        v = int(s)
    except ValueError:
        v = -1
    if v < 0:
        raise ValueError(f"--staleness must be a non-negative integer or 'inf', got {text!r}")
    return float(v)


class SSPClocks:
    """The servers' view of the workers' clocks (pure; unit-tested without MPI).

    ``pushed(w, c)`` records that worker w pushed its clock c; ``retire(w)`` removes a
    worker that is done with the epoch. ``ready(c)``: may a worker that pushed clock c
    get its parameters — every active worker has pushed at least c − bound."""

    def __init__(self, workers: int, bound: float):
        self.workers, self.bound = workers, bound
        self.reset()

    def reset(self) -> None:
        self.clock = [0] * self.workers
        self.active = set(range(self.workers))

    def pushed(self, w: int, c: int) -> None:
        if c != self.clock[w] + 1:
            raise RuntimeError(f"worker {w} pushed clock {c} after clock {self.clock[w]}")
        self.clock[w] = c

    def retire(self, w: int) -> None:
        self.active.discard(w)

    def slowest(self) -> float:
        return min((self.clock[w] for w in self.active), default=math.inf)

    def gap(self, c: int) -> int:
        """How far a worker at clock c is ahead of the slowest active worker (0 if none)."""
        low = self.slowest()
        return 0 if low == math.inf else max(0, int(c - low))

    def ready(self, c: int) -> bool:
        return c - self.slowest() <= self.bound


class _Message:
    """One worker→server message in a byte buffer: ``[meta (float64) | values | columns]``.

    meta = [clock, count, lr, loss, count since control, stop, NaN, n_values, n_columns];
    ``values`` (the parameter dtype) are the gradient sums of step ``clock`` at the
    columns the server sent last (the whole shard when dense; none when clock = 0);
    ``columns`` (int32, shard-local) are the parameters the next step needs, or
    n_columns = −1 for the whole shard."""

    META = 9

    def __init__(self, m: int, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.buf = np.zeros(8 * self.META + m * (self.dtype.itemsize + 4), dtype=np.uint8)
        self.meta = self.buf[:8 * self.META].view(np.float64)

    def values(self, n: int) -> np.ndarray:
        a = 8 * self.META
        return self.buf[a:a + n * self.dtype.itemsize].view(self.dtype)

    def columns(self, n_values: int, n: int) -> np.ndarray:
        a = 8 * self.META + n_values * self.dtype.itemsize
        return self.buf[a:a + 4 * n].view(np.int32)

    def nbytes(self) -> int:
        return 8 * self.META + int(self.meta[7]) * self.dtype.itemsize + 4 * max(int(self.meta[8]), 0)


@dataclass
class PSConfig:
    servers: int = knob(1, "ps: the last K ranks are servers, each owning 1/K of the parameters (no data)",
                        metavar="K")
    staleness: str = knob("inf", "ps: consistency model: 0 = BSP (equals sync), S > 0 = SSP (no worker more "
                                 "than S clocks ahead of the slowest), inf = asynchronous SGD",
                          metavar="S", kind=(str, int))
    dc_lambda: float = knob(0.0, "ps: DC-ASGD delay compensation g + LAMBDA*g*g*(w_now - w_stale) on the "
                                 "servers (0 = off)", metavar="LAMBDA")

    def validate(self) -> None:
        parse_staleness(self.staleness)
        if self.servers < 1:
            raise ValueError(f"--servers must be >= 1, got {self.servers}")
        if not self.dc_lambda >= 0 or not math.isfinite(self.dc_lambda):
            raise ValueError(f"--dc-lambda must be >= 0 and finite, got {self.dc_lambda}")


@register("ps", config=PSConfig)
class ParameterServer(Algorithm):
    @classmethod
    def serving_ranks(cls, cfg, size):
        return int(cfg.servers)

    def run_epoch(self, loop, epoch):
        return self.asynchronous_epoch(loop, epoch)

    def __init__(self, ctx):
        from ..data.partition import shard_rows

        super().__init__(ctx)
        cfg = self.cfg
        self.K = int(cfg.servers)
        if not 1 <= self.K < self.size:
            raise ValueError(f"--algo ps needs 1 <= --servers < the number of ranks ({self.size}); "
                             f"got --servers {self.K}")
        self.W = self.size - self.K
        self.bound = parse_staleness(cfg.staleness)
        self.dc_lambda = float(cfg.dc_lambda)
        self.server_ranks = list(range(self.W, self.size))
        self.shards = [shard_rows(self.npar, self.K, k) for k in range(self.K)]
        self.bounds = np.array([lo for lo, _ in self.shards] + [self.npar], dtype=np.int64)
        self.serves = self.rank >= self.W
        dt = self.params.dtype
        self._item = dt.itemsize
        # statistics (servers fill them; report() merges)
        self.gap_hist = np.zeros(1, dtype=np.int64)
        self.stale_hist = np.zeros(1, dtype=np.int64)
        self.moved = np.zeros(2, dtype=np.int64)        # [parameters sent in replies, shard sizes of those replies]
        if self.serves:
            from ..optim import make_optimizer

            self.k = self.rank - self.W
            lo, hi = self.shards[self.k]
            self.lo, self.hi = lo, hi
            m = hi - lo
            self.shard = self.params[lo:hi]                 # the optimizer updates this view in place
            self.shard_opt = make_optimizer(cfg.optimizer, self.shard, cfg.momentum, cfg.weight_decay)
            self._reg = [(max(s.start, lo) - lo, min(s.stop, hi) - lo) for s in self.model._weight_slices
                         if max(s.start, lo) < min(s.stop, hi)]
            self._in = _Message(m, dt)
            self._out = np.zeros(8 + m * self._item, dtype=np.uint8)
            self._out_flag = self._out[:8].view(np.float64)
            self._g = np.zeros(m, dtype=dt)
            self.clocks = SSPClocks(self.W, self.bound)
            self._sent_cols: list = [None] * self.W      # what each worker got last (None: all)
            self._want: list = [None] * self.W           # what each held-back worker asked for
            if self.bound == 0:   # BSP: one clock's pushes are summed in worker order
                self._held = np.zeros((self.W, m), dtype=dt)
                self._held_meta = np.zeros((self.W, 3))    # [clock, count, lr]; clock 0 = nothing held
            if self.dc_lambda > 0:
                self._bak = np.zeros((self.W, m), dtype=dt)
        else:
            self._msg = [_Message(hi - lo, dt) for lo, hi in self.shards]
            self._reply = [np.zeros(8 + (hi - lo) * self._item, dtype=np.uint8) for lo, hi in self.shards]
            self._cols: list = [None] * self.K          # shard-local columns fetched for the step
            self._bye = np.zeros(1, dtype=np.float64)
            self._mark = None
        self.clock = 0
        self._pushed = True          # nothing to deliver before the first step of an epoch
        self._stop = False

    # ---- the worker side -------------------------------------------------------------
    def step(self, step, loss, count, lr, stop):
        """Keep the step's gradient; it travels with the next step's request (before_batch)."""
        self.control.note(step, loss, count, self.grad)
        self.clock += 1
        self._pushed, self._count, self._lr, self._stop = False, count, lr, stop
        loss, count = self.control.take()
        return Outcome(loss, count, False)

    def _needed(self, pieces) -> np.ndarray | None:
        """Sorted parameter indices the batch reads (CSR rows of a linear model), else None."""
        from ..data.layout import CSRMatrix
        from ..kernels._common import touched_columns

        if not pieces or not all(isinstance(X, CSRMatrix) for X, _, _ in pieces):
            return None
        if self.model.params_of_columns(np.zeros(0, dtype=np.int64)) is None:
            return None
        if self._mark is None:
            d = pieces[0][0].shape[1]
            self._mark, self._colbuf = np.zeros(d, dtype=np.uint8), np.empty(d, dtype=np.int64)
        n = 0
        for X, _, rows in pieces:
            n = touched_columns(X.indptr, X.indices, rows, self._mark, self._colbuf, n)
        cols = np.sort(self._colbuf[:n])
        self._mark[cols] = 0
        return self.model.params_of_columns(cols)

    def before_batch(self, pieces):
        """One round trip to every server before computing a batch: deliver the previous
        step's gradient and fetch the parameters this batch reads (all of them for dense
        data; the touched ones for CSR data). Returns an Outcome when the epoch is over."""
        need = self._needed(pieces)
        cut = None if need is None else np.searchsorted(need, self.bounds)
        reqs, sent = [], 0
        for k, (lo, hi) in enumerate(self.shards):
            msg, prev = self._msg[k], self._cols[k]
            meta = msg.meta
            push = not self._pushed
            meta[0], meta[1], meta[2] = (self.clock, self._count, self._lr) if push else (0, 0, 0)
            self.control.pack(meta[_CTRL:_CTRL + CONTROL.size], self._stop)
            nv = 0
            if push:
                nv = hi - lo if prev is None else prev.size
                vals = msg.values(nv)
                if prev is None:
                    vals[:] = self.grad[lo:hi]
                else:
                    np.take(self.grad[lo:hi], prev, out=vals)
            meta[7] = nv
            if need is None:
                meta[8] = -1
                self._cols[k] = None
            else:
                local = msg.columns(nv, int(cut[k + 1] - cut[k]))
                np.subtract(need[cut[k]:cut[k + 1]], lo, out=local, casting="unsafe")
                meta[8] = local.size
                self._cols[k] = local.copy()
            nbytes = msg.nbytes()
            sent += nbytes
            reqs.append(self.comm.Irecv(self._reply[k], source=self.server_ranks[k], tag=_TAG_REPLY))
            reqs.append(self.comm.Isend(msg.buf[:nbytes], dest=self.server_ranks[k], tag=_TAG_PUSH))
        self._pushed = True
        self.coll.wait(reqs)
        got = 0
        for k, (lo, hi) in enumerate(self.shards):
            cols = self._cols[k]
            n = hi - lo if cols is None else cols.size
            vals = self._reply[k][8:8 + n * self._item].view(self.params.dtype)
            if cols is None:
                self.params[lo:hi] = vals
            else:
                self.params[lo + cols] = vals
            got += 8 + n * self._item
        self.coll.counters.add(sent=sent, received=got)
        flag = float(self._reply[0][:8].view(np.float64)[0])    # the first server speaks for the epoch
        if flag < _END_EPOCH:
            return None
        for srv in self.server_ranks[1:]:                        # the others stop waiting for me
            self.coll.send(self._bye, srv, _TAG_BYE)
        return Outcome(0.0, 0.0, flag >= _STOP, end_epoch=True)

    # ---- the server side -------------------------------------------------------------
    def serve_epoch(self, epoch_samples: float, beat=None) -> bool:
        """Answer workers until every one is done with the epoch. Returns whether a stop
        (signal or NaN report) ended it (only the first server decides; others return False)."""
        from mpi4py import MPI

        first = self.k == 0
        clocks = self.clocks
        clocks.reset()
        self._pending: dict[int, int] = {}
        self._version = 0                         # pushes applied to this shard in this epoch
        self._pulled_at = [0] * self.W
        self._sent_cols = [None] * self.W
        if self.bound == 0:
            self._held_meta[:] = 0
        if self.dc_lambda > 0:
            self._bak[:] = self.shard
        seen, ended, stop = 0.0, False, False
        status = MPI.Status()
        msg = self._in
        meta = msg.meta
        while clocks.active:
            self.coll.recv_any(msg.buf, status)     # counted
            if beat is not None:     # the stall watchdog: a server is alive while messages arrive
                beat()
            w, tag = status.Get_source(), status.Get_tag()
            if tag == _TAG_BYE:
                clocks.retire(w)
            else:
                c, count, lr = int(meta[0]), float(meta[1]), float(meta[2])
                nv, nc = int(meta[7]), int(meta[8])
                bad = meta[_META_NAN] > 0
                if c > 0:
                    clocks.pushed(w, c)
                    self._note_staleness(w)
                    if first:
                        seen += count
                    self._take_push(w, c, 0.0 if bad else count, lr, msg.values(nv), bad)
                if first:
                    stop = stop or meta[_META_STOP] > 0 or bad
                    ended = ended or stop or seen >= epoch_samples
                self._want[w] = None if nc < 0 else msg.columns(nv, nc).copy()
                self._pending[w] = c
            self._answer(ended, stop, first)
        return stop

    def _take_push(self, w, c, count, lr, values, bad) -> None:
        """Scatter the push's values (at the columns ``w`` was sent) into a shard-sized gradient."""
        cols = self._sent_cols[w]
        g = self._held[w] if self.bound == 0 else self._g
        if bad:
            g[:] = 0
        elif cols is None:
            g[:] = values
        else:
            g[:] = 0
            g[cols] = values
        if self.bound == 0:                    # hold it until the clock is complete
            self._held_meta[w] = (c, count, lr)
        elif count > 0:
            self._apply(g, count, lr / self.W, w)

    def _apply(self, g, count, lr, w=None) -> None:
        """One optimizer step on this shard with the mean gradient g / count (+ L2),
        delay-compensated for worker ``w`` when DC-ASGD is on."""
        from ..kernels._common import add_scaled

        g *= g.dtype.type(1.0 / count)
        if self.dc_lambda > 0 and w is not None:
            # the data gradient + λ g⊙g⊙(w_now − w_sent); the L2 term below is never stale
            g += g.dtype.type(self.dc_lambda) * g * g * (self.shard - self._bak[w])
        if self.model.l2:
            a = g.dtype.type(self.model.l2)
            for lo, hi in self._reg:
                add_scaled(g[lo:hi], self.shard[lo:hi], a)
        self.shard_opt.step(g, lr)
        self._version += 1

    def _complete_bsp_clock(self) -> None:
        """BSP: once every active worker has pushed the held clock, sum it in worker order."""
        held = self._held_meta
        c = int(held[:, 0].max())
        if c == 0 or self.clocks.slowest() < c:
            return
        rows = [w for w in range(self.W) if held[w, 0] == c]
        g = self._g
        g[:] = self._held[rows[0]]
        for w in rows[1:]:
            g += self._held[w]
        count = float(held[rows, 1].sum())
        lr = float(held[rows[0], 2])
        held[rows, 0] = 0
        if count > 0:
            self._apply(g, count, lr)

    def _answer(self, ended: bool, stop: bool, first: bool) -> None:
        """Reply to every held-back worker the consistency model now lets go."""
        if self.bound == 0:
            self._complete_bsp_clock()
        if not self._pending:
            return
        flag = (_STOP if stop else _END_EPOCH) if ended else 0.0
        for w in sorted(self._pending):
            c = self._pending[w]
            if not (self.clocks.ready(c) or (first and ended)):
                continue
            if not flag:   # parameters the worker computes with (not an end-of-epoch release)
                self.gap_hist = _count(self.gap_hist, self.clocks.gap(c))
            self._out_flag[0] = flag
            cols = self._want[w]
            n = self.shard.size if cols is None else cols.size
            vals = self._out[8:8 + n * self._item].view(self.shard.dtype)
            if cols is None:
                vals[:] = self.shard
            else:
                np.take(self.shard, cols, out=vals)
            self.coll.send(self._out[:8 + n * self._item], w, _TAG_REPLY)
            self.moved += (n, self.shard.size)
            self._pulled_at[w] = self._version
            self._sent_cols[w] = cols
            if self.dc_lambda > 0:
                if cols is None:
                    self._bak[w] = self.shard
                else:
                    self._bak[w][cols] = vals
            del self._pending[w]
            if first and ended:
                self.clocks.retire(w)

    def _note_staleness(self, w: int) -> None:
        self.stale_hist = _count(self.stale_hist, self._version - self._pulled_at[w])

    # ---- epoch ends: everyone gets the servers' model --------------------------------
    def finish_epoch(self) -> None:
        self.control.raise_if_bad_anywhere()
        for k, (lo, hi) in enumerate(self.shards):
            self.coll.bcast(self.params[lo:hi], root=self.server_ranks[k])
        self.clock = 0
        self._pushed = True

    def consensus(self):
        return self.params

    # ---- checkpoints: the optimizer state assembled from the servers' shards ----------
    def shared_state(self):
        full = self.opt.state()
        mine = self.shard_opt.state() if self.serves else {}
        for key, arr in full.items():
            if arr.size == self.npar:
                for k, (lo, hi) in enumerate(self.shards):
                    if self.serves and k == self.k:
                        arr[lo:hi] = mine[key]
                    self.coll.bcast(arr[lo:hi], root=self.server_ranks[k])
            elif key == "adam_t":   # every server applied the same number of steps
                t = int(mine[key]) if self.serves and self.k == 0 else 0
                self.opt.t = int(self.comm.bcast(t, root=self.server_ranks[0]))
        return {"params": self.params, **self.opt.state()}

    def load_state(self, shared, per_rank, same_size):
        self.params[:] = shared["params"]
        self.opt.load_state(shared)
        if self.serves:
            self.shard_opt.load_state({k: (v[self.lo:self.hi] if np.ndim(v) and np.size(v) == self.npar else v)
                                       for k, v in shared.items() if k != "params"})

    # ---- what the summary reports ----------------------------------------------------
    def report(self) -> dict:
        """Collective: staleness histograms summed over the servers, the largest clock gap."""
        gaps = self.comm.allgather(self.gap_hist if self.serves else None)
        stales = self.comm.allgather(self.stale_hist if self.serves else None)

        def merged(hists):
            hists = [h for h in hists if h is not None]
            out = np.zeros(max(h.size for h in hists), dtype=np.int64)
            for h in hists:
                out[:h.size] += h
            return out
        gap, stale = merged(gaps), merged(stales)
        moved = np.sum([m for m in self.comm.allgather(self.moved if self.serves else None) if m is not None], axis=0)
        return {"clock_gap_max": int(np.flatnonzero(gap)[-1]) if gap.any() else 0,
                "clock_gap_histogram": gap.tolist(), "staleness_histogram": stale.tolist(),
                "pull_fraction": float(moved[0] / moved[1]) if moved[1] else 1.0}

    def describe(self):
        s = "inf (ASGD)" if self.bound == math.inf else ("0 (BSP)" if self.bound == 0 else f"{int(self.bound)} (SSP)")
        dc = f", DC-ASGD lambda {self.dc_lambda:g}" if self.dc_lambda > 0 else ""
        return (f"parameter server: {self.W} worker(s), {self.K} server(s) on ranks {self.W}-{self.size - 1}, "
                f"staleness {s}{dc}")
