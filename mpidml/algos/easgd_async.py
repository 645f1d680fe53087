"""``easgd_async``: asynchronous EASGD — every worker meets the centre at its own pace.

The centre variable x̃ lives on a dedicated rank (the last one); the other ranks are
workers with the data. Every ``--tau`` of its own steps a worker sends the centre
``[x_i | samples since last meeting | loss | stop | NaN]`` and receives x̃ as it was
when the centre took the message; both sides then apply the elastic update with that
same x̃ (Zhang et al. 2015, Algorithm 1):

    worker:  x_i ← x_i − α (x_i − x̃)        centre:  x̃ ← x̃ + α (x_i − x̃)

No worker ever waits for another worker: a straggler only delays its own meetings.
An *epoch* ends when the workers together have trained on n samples (counted by the
centre), so fast workers do more of the work; the centre tells each worker at its
next meeting, and everyone then evaluates together. Stop requests and NaN reports
travel the same way (the centre answers "stop" to everyone after the first).

Why a centre rank and not MPI one-sided RMA: passive-target RMA on these MPICH builds
makes progress only when the target calls MPI; with the target busy computing a
``Lock/Get/Accumulate/Unlock`` waited until it entered MPI (1.5 s in a 1.5 s test), and
``MPIR_CVAR_ASYNC_PROGRESS=1`` gave 24 ms per access at 3 ranks on 2 cores. A centre
rank answering point-to-point messages has none of that (measured in bench/straggler.py).
The centre and waiting workers poll politely (``comm.p2p``), leaving the CPU to computing
ranks on an oversubscribed node.
"""

from __future__ import annotations

import numpy as np

from ..comm.tags import Tag
from . import register
from .base import CONTROL, CONTROL_SIZE, Outcome
from .easgd import CentreModel, EASGDConfig, easgd_alpha

__all__ = ["AsyncEASGD"]

_TAG_MEET, _TAG_REPLY = int(Tag.EASGD_MEET), int(Tag.EASGD_REPLY)
_END_EPOCH, _STOP = 1.0, 2.0


@register("easgd_async", config=EASGDConfig)
class AsyncEASGD(CentreModel):
    @classmethod
    def serving_ranks(cls, cfg, size):
        return 1      # the last rank holds the centre variable and no data

    def run_epoch(self, loop, epoch):
        return self.asynchronous_epoch(loop, epoch)

    def __init__(self, ctx):
        super().__init__(ctx)
        if self.size < 2:
            raise ValueError("--algo easgd_async needs at least 2 ranks (one holds the centre variable)")
        self.tau = int(self.cfg.tau)
        self.center_rank = self.size - 1
        self.workers = self.size - 1
        self.serves = self.rank == self.center_rank    # the centre rank: no data, answers meetings
        self.alpha = easgd_alpha(self.cfg, self.workers)
        self.center = self.params.copy()
        n = self.npar
        self._msg = np.zeros(n + 1 + CONTROL_SIZE, dtype=np.float64)   # [x | samples | control]
        self._reply = np.zeros(n + 1, dtype=np.float64)                   # [x̃ | flag]
        self.samples = 0.0
        self.meetings = np.zeros(self.size, dtype=np.int64)               # per worker (centre's count)
        self.local_steps = 0

    # ---- the worker side -------------------------------------------------------------
    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)
        self.samples += count
        self.local_steps += 1
        if self.local_steps % self.tau:
            return None
        n, msg, reply = self.npar, self._msg, self._reply
        msg[:n] = self.params
        msg[n] = self.samples
        self.control.pack(msg[n + 1:], stop)
        reqs = [self.comm.Irecv(reply, source=self.center_rank, tag=_TAG_REPLY),
                self.comm.Isend(msg, dest=self.center_rank, tag=_TAG_MEET)]
        self.coll.wait(reqs, sent=msg.nbytes, received=reply.nbytes)
        self.samples = 0.0
        self.params -= (self.alpha * (self.params - reply[:n])).astype(self.params.dtype)
        flag = reply[n]
        loss, count = self.control.take()
        return Outcome(loss, count, flag >= _STOP, end_epoch=flag >= _END_EPOCH)

    def finish_epoch(self) -> None:
        """Collective after every epoch: the centre's NaN verdict, and x̃ on every rank."""
        self.control.raise_if_bad_anywhere()     # the centre's bad_step is -1
        self.coll.bcast(self.center, root=self.center_rank)

    # ---- the centre side ------------------------------------------------------------
    def serve_epoch(self, epoch_samples: float, beat=None) -> bool:
        """Answer workers until they have trained on ``epoch_samples`` samples together and
        every worker has been told the epoch is over. Returns whether a stop was requested."""
        from mpi4py import MPI

        n = self.npar
        msg, reply = self._msg, self._reply
        seen, told, stop = 0.0, set(), False
        status = MPI.Status()
        stop_at, nan_at = n + 1 + CONTROL.offset("stop"), n + 1 + CONTROL.offset("nan")
        while len(told) < self.workers:
            self.coll.recv_any(msg, status)      # only meetings come to the centre (counted)
            if beat is not None:     # the stall watchdog: the centre is alive while workers meet it
                beat()
            w = status.Get_source()
            self.meetings[w] += 1
            seen += msg[n]
            stop = stop or msg[stop_at] > 0
            # a worker saw NaN: end the epoch everywhere (finish_epoch then names the worker)
            stop = stop or msg[nan_at] > 0
            reply[:n] = self.center
            ended = seen >= epoch_samples or stop or w in told
            reply[n] = _STOP if stop else (_END_EPOCH if ended else 0.0)
            self.coll.send(reply, w, _TAG_REPLY)
            self.center += self.alpha * (msg[:n] - reply[:n])
            if ended:
                told.add(w)
        return stop

    # ---- evaluation and state --------------------------------------------------------
    def extra_rank_state(self):
        return {"meetings": self.meetings} if self.serves else {}

    def describe(self):
        return (f"asynchronous EASGD ({self.workers} workers meet the centre on rank {self.center_rank} every "
                f"{self.tau} of their own steps, alpha {self.alpha:g})")
