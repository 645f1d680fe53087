"""``--on-failure shrink``: the survivors of a dead rank drop it and train on (issue 20).

    t.recovery = Recovery(t)              # set-up (engine.setup), collective
    ...
    except RankFailure as exc:            # the step loop (engine.loop), once per failure
        done = t.recovery.recover(exc)    # collective over the survivors

What ``recover`` does, on every survivor: revoke and shrink the run's communicator
(``runtime.ulfm.shrink``: every survivor gets the same list of dead ranks), rebuild the
run's ``Collectives`` on the shrunken one (MPI's own allreduce: mpidml's ring and
shared-memory loops do not yet notice a dead peer) and point the algorithm, the
evaluator and the checkpointer at it; then the survivors agree on the step to continue
from. A survivor may have finished the failing step (its allreduce completed before the
death was noticed) while the others had not: the step count is the maximum over the
survivors, and the lowest rank holding it broadcasts the parameters and the optimizer's
buffers, so the replicas are identical again. Those behind count the step as done;
the others take it again on the new communicator.

First increment, for ``--algo sync``: nothing is re-partitioned. The survivors keep their
own rows, so the dead rank's rows are not trained on (nor evaluated) for the rest of the
run, and the global batch is smaller by its share (the mean gradient stays a mean: it
divides by the agreed sample count). The summary reports ``failures_survived`` and the
final ``world_size``; the metrics file gets one ``{"type": "failure"}`` record per event.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Recovery"]


class Recovery:
    """Collective: remember who is where (host, pid, rows) for the failure messages."""

    def __init__(self, t):
        from mpi4py import MPI

        t.comm.Set_errhandler(MPI.ERRORS_RETURN)    # a dead peer is an error to handle, not an abort
        self.t = t
        self.initial_size = t.size
        self.world_ranks = list(range(t.size))      # the starting ranks of the current members
        self.whos = t.comm.allgather((socket.gethostname(), os.getpid()))
        self.events: list[dict] = []

    def recover(self, exc) -> bool:
        """Collective over the survivors, after ``exc`` (a ``RankFailure``). Returns True
        if this rank's current step counts as done (it took the state of a survivor that
        had finished it), False if the step must be taken again."""
        from ..runtime.errors import MpidmlError
        from ..runtime.ulfm import shrink

        t = self.t
        t0 = time.perf_counter()
        step = t.step
        new, dead = shrink(t.comm)
        if not dead:
            raise MpidmlError(f"rank {t.rank}: {exc}, but the shrunken communicator has every rank")
        if new.Get_size() < 1:
            raise MpidmlError("no rank left to train on")
        gone = [(self.world_ranks[r], *self.whos[r]) for r in dead]
        alive = [r for r in range(t.size) if r not in dead]
        self.world_ranks = [self.world_ranks[r] for r in alive]
        self.whos = [self.whos[r] for r in alive]
        self._rebuild(new, alive)
        done = self._agree_and_sync(step)
        seconds = time.perf_counter() - t0
        lost = ", ".join(f"rank {r} (host {h}, pid {p})" for r, h, p in gone)
        event = {"type": "failure", "step": step, "dead_ranks": [g[0] for g in gone],
                 "dead": [{"rank": r, "host": h, "pid": p} for r, h, p in gone],
                 "world_size": t.size, "recovery_seconds": seconds, "continue_from_step": t.step + done}
        self.events.append(event)
        t.log.record(event)
        t.log.always(f"mpidml: {lost} died at step {step}; shrunk to {t.size} rank(s) in {seconds:.2f} s, "
                     f"continuing from step {t.step + done}. Its rows are not trained on for the rest of "
                     f"this run (no re-partitioning yet): the global batch is smaller by its share")
        if t.fault is not None:
            t.fault.renumber(alive)
        return bool(done)

    def _rebuild(self, new, alive: list[int]) -> None:
        """Point everything that talks to the communicator at ``new`` (size, rank too)."""
        from ..comm.collectives import Collectives
        from .setup import _prepare_evaluation, _run_impl

        t = self.t
        old = t.coll
        t.comm = new
        t.rank, t.size = new.Get_rank(), new.Get_size()
        t.coll = Collectives(new, debug=old.debug, counters=t.counters, small_bytes=old.small_bytes,
                             impl=_run_impl(t.cfg))
        t.coll.calls = old.calls
        algo = t.algo
        algo.ctx.comm, algo.ctx.coll = new, t.coll
        algo.comm, algo.coll, algo.rank, algo.size = new, t.coll, t.rank, t.size
        algo.control.comm, algo.control.coll = new, t.coll
        algo.control.take()              # the failed step's loss and count are noted again
        _prepare_evaluation(t)
        t.log.rank = t.rank              # the lowest survivor speaks (metrics stay with the old rank 0)
        # the watchdog's heartbeats ran on a duplicate of the old communicator, with the dead
        # rank in it: a new watchdog on the survivors' communicator (its Idup is collective)
        from ..runtime.watchdog import Watchdog
        t.watchdog.stop()
        t.watchdog = Watchdog(t.cfg.stall_timeout, t.rank, t.size, comm=new, liveness=t.cfg.liveness_timeout)
        for holder in (t.ckpt, getattr(t, "timeline", None)):
            if holder is not None and hasattr(holder, "comm"):
                holder.comm = new

    def _agree_and_sync(self, step: int) -> int:
        """The survivors' steps done (a survivor may be one ahead); the lowest rank that
        is furthest broadcasts the replicated state. 1 if this rank was behind."""
        t = self.t
        done = t.comm.allgather(t.step)
        target = max(done)
        if target - min(done) > 1:
            from ..runtime.errors import MpidmlError
            raise MpidmlError(f"survivors are more than one step apart after a failure: {done}")
        leader = done.index(target)
        state = t.algo.shared_state()
        for key in sorted(state):
            t.coll.bcast(state[key], root=leader)
        t.algo.load_state(state, [], False)
        return target - t.step

    def report(self) -> dict:
        """The summary's fields."""
        return {"failures_survived": len(self.events), "initial_world_size": self.initial_size,
                "dead_ranks": [r for e in self.events for r in e["dead_ranks"]]}
