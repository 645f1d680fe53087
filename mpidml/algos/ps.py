"""``ps``: parameter-server training over MPI point-to-point — BSP, SSP, ASGD, DC-ASGD.

The last ``--servers K`` ranks are servers: server k owns the k-th contiguous shard of
the flat parameter vector (``shard_rows(nparams, K, k)``) and that shard's optimizer
state. The other W = p − K ranks are workers; they hold the data (the W-way row
partition) and no optimizer. Every worker step is one round trip to every server:

    worker:  computes its gradient sum g at its copy of the parameters,
             Isend(push_k = [clock, count, lr, control | g[shard k]]) to every server k,
             Irecv(reply_k = [flag | shard k]) and waits; its copy := the replies
    server:  applies the push with its optimizer, and answers the worker *when the
             consistency model allows*

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
  shard it last sent that worker (w_bak) and compensates the delayed gradient before
  applying it: g ← g + λ · g ⊙ g ⊙ (w_now − w_bak). Costs W copies of the shard per server.

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

import numpy as np

from .base import Algorithm, Outcome

__all__ = ["ParameterServer", "SSPClocks", "parse_staleness"]

_TAG_PUSH, _TAG_REPLY, _TAG_BYE = 0x7030, 0x7031, 0x7032
_END_EPOCH, _STOP = 1.0, 2.0
_PUSH_META = 7     # [clock, count, lr, loss, count since control, stop, NaN]  (float64)


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


class ParameterServer(Algorithm):
    name = "ps"
    asynchronous = True

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
        self.serves = self.rank >= self.W
        dt = self.params.dtype
        self._item = dt.itemsize
        # staleness statistics (servers fill them; report() merges)
        self.gap_hist = np.zeros(1, dtype=np.int64)
        self.stale_hist = np.zeros(1, dtype=np.int64)
        if self.serves:
            from ..optim import make_optimizer

            self.k = self.rank - self.W
            lo, hi = self.shards[self.k]
            self.lo, self.hi = lo, hi
            self.shard = self.params[lo:hi]                 # the optimizer updates this view in place
            self.shard_opt = make_optimizer(cfg.optimizer, self.shard, cfg.momentum, cfg.weight_decay)
            self._reg = [(max(s.start, lo) - lo, min(s.stop, hi) - lo) for s in self.model._weight_slices
                         if max(s.start, lo) < min(s.stop, hi)]
            m = hi - lo
            self._in = np.zeros(8 * _PUSH_META + m * self._item, dtype=np.uint8)
            self._in_meta = self._in[:8 * _PUSH_META].view(np.float64)
            self._in_grad = self._in[8 * _PUSH_META:].view(dt)
            self._out = np.zeros(8 + m * self._item, dtype=np.uint8)
            self._out_flag = self._out[:8].view(np.float64)
            self._out_shard = self._out[8:].view(dt)
            self._g = np.zeros(m, dtype=dt)
            self.clocks = SSPClocks(self.W, self.bound)
            if self.bound == 0:   # BSP: one clock's pushes are summed in worker order
                self._held = np.zeros((self.W, m), dtype=dt)
                self._held_meta = np.zeros((self.W, 3))    # [clock, count, lr]; clock 0 = nothing held
            if self.dc_lambda > 0:
                self._bak = np.zeros((self.W, m), dtype=dt)
        else:
            self._push, self._push_meta, self._push_grad = [], [], []
            self._reply, self._reply_flag, self._reply_shard = [], [], []
            for lo, hi in self.shards:
                buf = np.zeros(8 * _PUSH_META + (hi - lo) * self._item, dtype=np.uint8)
                self._push.append(buf)
                self._push_meta.append(buf[:8 * _PUSH_META].view(np.float64))
                self._push_grad.append(buf[8 * _PUSH_META:].view(dt))
                rep = np.zeros(8 + (hi - lo) * self._item, dtype=np.uint8)
                self._reply.append(rep)
                self._reply_flag.append(rep[:8].view(np.float64))
                self._reply_shard.append(rep[8:].view(dt))
            self._bye = np.zeros(1, dtype=np.float64)
        self.clock = 0

    # ---- the worker side -------------------------------------------------------------
    def step(self, step, loss, count, lr, stop):
        from ..comm.p2p import polite_wait
        from ..comm.ring import counters

        self.control.note(step, loss, count, self.grad)
        self.clock += 1
        reqs = []
        for k, (lo, hi) in enumerate(self.shards):
            meta = self._push_meta[k]
            meta[0], meta[1], meta[2] = self.clock, count, lr
            self.control.pack(meta[3:7], stop)
            self._push_grad[k][:] = self.grad[lo:hi]
            reqs.append(self.comm.Irecv(self._reply[k], source=self.server_ranks[k], tag=_TAG_REPLY))
        for k in range(self.K):
            reqs.append(self.comm.Isend(self._push[k], dest=self.server_ranks[k], tag=_TAG_PUSH))
        polite_wait(reqs)
        counters.add(sent=sum(b.nbytes for b in self._push), received=sum(b.nbytes for b in self._reply))
        for k, (lo, hi) in enumerate(self.shards):
            self.params[lo:hi] = self._reply_shard[k]
        flag = float(self._reply_flag[0][0])       # the first server speaks for the epoch
        if flag >= _END_EPOCH:                     # the other servers stop waiting for me
            for srv in self.server_ranks[1:]:
                self.comm.Send(self._bye, dest=srv, tag=_TAG_BYE)
            counters.add(sent=self._bye.nbytes * (self.K - 1))
        loss, count = self.control.take()
        return Outcome(loss, count, flag >= _STOP, end_epoch=flag >= _END_EPOCH)

    # ---- the server side -------------------------------------------------------------
    def serve_epoch(self, epoch_samples: float) -> bool:
        """Answer pushes until every worker is done with the epoch. Returns whether a stop
        (signal or NaN report) ended it (only the first server decides; others return False)."""
        from mpi4py import MPI

        from ..comm.p2p import polite_recv
        from ..comm.ring import counters

        first = self.k == 0
        clocks = self.clocks
        clocks.reset()
        self._pending: dict[int, int] = {}
        self._version = 0                         # pushes applied to this shard in this epoch
        self._pulled_at = [0] * self.W
        if self.bound == 0:
            self._held_meta[:] = 0
        if self.dc_lambda > 0:
            self._bak[:] = self.shard
        seen, ended, stop = 0.0, False, False
        status = MPI.Status()
        meta, grad = self._in_meta, self._in_grad
        while clocks.active:
            polite_recv(self.comm, self._in, status)
            w, tag = status.Get_source(), status.Get_tag()
            if tag == _TAG_BYE:
                counters.add(received=8)
                clocks.retire(w)
            else:
                counters.add(received=self._in.nbytes)
                c, count, lr = int(meta[0]), float(meta[1]), float(meta[2])
                bad = meta[6] > 0
                clocks.pushed(w, c)
                self._note_staleness(w)
                if first:
                    seen += count
                    stop = stop or meta[5] > 0 or bad
                    ended = ended or stop or seen >= epoch_samples
                self._take_push(w, c, 0.0 if bad else count, lr, grad, bad)
                self._pending[w] = c
            self._answer(ended, stop, first)
        return stop

    def _take_push(self, w, c, count, lr, grad, bad) -> None:
        if self.bound == 0:                    # hold it until the clock is complete
            if bad:
                self._held[w] = 0
            else:
                self._held[w] = grad
            self._held_meta[w] = (c, count, lr)
            return
        if bad or count <= 0:
            return
        g = self._g
        g[:] = grad
        self._apply(g, count, lr / self.W, w)

    def _apply(self, g, count, lr, w=None) -> None:
        """One optimizer step on this shard with the mean gradient g / count (+ L2),
        delay-compensated for worker ``w`` when DC-ASGD is on."""
        from ..kernels._common import add_scaled

        g *= g.dtype.type(1.0 / count)
        if self.model.l2:
            a = g.dtype.type(self.model.l2)
            for lo, hi in self._reg:
                add_scaled(g[lo:hi], self.shard[lo:hi], a)
        if self.dc_lambda > 0 and w is not None:
            # g + λ g⊙g⊙(w_now − w_bak)
            g += g.dtype.type(self.dc_lambda) * g * g * (self.shard - self._bak[w])
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
        from ..comm.ring import counters

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
            self._out_shard[:] = self.shard
            self.comm.Send(self._out, dest=w, tag=_TAG_REPLY)
            counters.add(sent=self._out.nbytes)
            self._pulled_at[w] = self._version
            if self.dc_lambda > 0:
                self._bak[w] = self.shard
            del self._pending[w]
            if first and ended:
                self.clocks.retire(w)

    def _note_staleness(self, w: int) -> None:
        self.stale_hist = _count(self.stale_hist, self._version - self._pulled_at[w])

    # ---- epoch ends: everyone gets the servers' model --------------------------------
    def finish_epoch(self) -> None:
        from ..comm.select import bcast

        self.control.raise_if_bad_anywhere()
        for k, (lo, hi) in enumerate(self.shards):
            bcast(self.comm, self.params[lo:hi], root=self.server_ranks[k])
        self.clock = 0

    def consensus(self):
        return self.params

    # ---- checkpoints: the optimizer state assembled from the servers' shards ----------
    def shared_state(self):
        from ..comm.select import bcast

        full = self.opt.state()
        mine = self.shard_opt.state() if self.serves else {}
        for key, arr in full.items():
            if arr.size == self.npar:
                for k, (lo, hi) in enumerate(self.shards):
                    if self.serves and k == self.k:
                        arr[lo:hi] = mine[key]
                    bcast(self.comm, arr[lo:hi], root=self.server_ranks[k])
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
        return {"clock_gap_max": int(np.flatnonzero(gap)[-1]) if gap.any() else 0,
                "clock_gap_histogram": gap.tolist(), "staleness_histogram": stale.tolist()}

    def describe(self):
        s = "inf (ASGD)" if self.bound == math.inf else ("0 (BSP)" if self.bound == 0 else f"{int(self.bound)} (SSP)")
        dc = f", DC-ASGD lambda {self.dc_lambda:g}" if self.dc_lambda > 0 else ""
        return (f"parameter server: {self.W} worker(s), {self.K} server(s) on ranks {self.W}-{self.size - 1}, "
                f"staleness {s}{dc}")
