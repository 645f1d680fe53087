"""The loop shapes an epoch can take. The algorithm picks one (``Algorithm.run_epoch``);
the engine provides them, so every algorithm gets the same step accounting, fault
injection, metrics records, checkpoints and heartbeats.

    step_loop    every rank takes the same number of steps (sync, local SGD, EASGD,
                 gossip, push-sum, CHOCO, ADMM, feature-parallel)
    worker_loop  an asynchronous worker cycles through its rows until the serving ranks
                 end the epoch (ps, easgd_async workers)
    serve_loop   a serving rank answers workers until the epoch is done (ps servers,
                 easgd_async's centre)
"""

from __future__ import annotations

import time

__all__ = ["EpochLoop"]


class EpochLoop:
    """One run's epoch machinery; ``trainer`` is the ``engine.trainer.Trainer``."""

    def __init__(self, trainer):
        self.t = trainer

    # ---- the shapes -------------------------------------------------------------------
    def step_loop(self, epoch: int, order_rank: int) -> int:
        """Synchronous steps over this epoch's row order of rank ``order_rank``."""
        t = self.t
        stopped_by = 0
        batches = t.source.epoch(t.steps_per_epoch, t.cfg.seed, epoch, order_rank)
        for s_in_epoch, pieces in self._remaining(epoch, batches):
            stopped_by, over = self._take_step(epoch, s_in_epoch, pieces)
            if over:
                break
            if t.cfg.checkpoint_every and t.step % t.cfg.checkpoint_every == 0 and t.step < t.total_steps:
                t.mark("checkpoint", t.step, slow=True)
                t.save_checkpoint(t.step)
        return stopped_by

    def worker_loop(self, epoch: int) -> int:
        """An asynchronous worker: fetch (``before_batch``), compute, push, until told the
        epoch is over; then the epoch-end agreement."""
        t = self.t
        stopped_by = 0
        for s_in_epoch, pieces in self._remaining(epoch, self._cycle(epoch)):
            t.mark("communicate", t.step)
            t_comm = time.perf_counter()
            ahead = t.algo.before_batch(pieces)
            t.phase_time[1] += time.perf_counter() - t_comm
            if ahead is not None:
                stopped_by = int(ahead.stop)
                break
            stopped_by, over = self._take_step(epoch, s_in_epoch, pieces)
            if over:
                break
        return self._asynchronous_epoch_end(epoch, stopped_by)

    def serve_loop(self, epoch: int) -> int:
        """A serving rank (no data): answer the workers until the epoch is done."""
        t = self.t
        t.mark("communicate", t.step)
        step = t.step
        stopped_by = int(t.algo.serve_epoch(t.n, beat=lambda: t.mark("communicate", step)))
        return self._asynchronous_epoch_end(epoch, stopped_by)

    # ---- shared pieces ----------------------------------------------------------------
    def _remaining(self, epoch: int, batches):
        """The epoch's steps not yet taken (a mid-epoch resume skips the first ones:
        the row order is a pure function of seed, epoch and rank)."""
        first = (epoch - 1) * self.t.steps_per_epoch
        for s_in_epoch, pieces in enumerate(batches):
            if first + s_in_epoch >= self.t.start_step:
                yield s_in_epoch, pieces

    def _cycle(self, epoch: int):
        """Endless steps for asynchronous workers: this epoch's order, then fresh orders."""
        t = self.t
        k = 0
        while True:
            yield from t.source.epoch(t.steps_per_epoch, t.cfg.seed, epoch + 100_000 * k, t.rank)
            k += 1

    def _take_step(self, epoch: int, s_in_epoch: int, pieces) -> tuple[int, bool]:
        """One step and its accounting: (the agreed stop signal, whether the epoch is over
        for this rank — a stop, or an asynchronous algorithm ending the epoch)."""
        out = self._step(pieces)
        stopped_by = 0
        if out is not None:
            self.t.hooks.on_step(s_in_epoch, out)
            stopped_by = int(out.stop)       # some rank got SIGTERM/SIGUSR1: all stop here
            if out.end_epoch:
                return stopped_by, True      # (the step is not counted: the epoch ended before it)
        self._count_step(epoch, out)
        return stopped_by, bool(stopped_by)

    def _step(self, pieces):
        """Compute this rank's gradient sums on ``pieces`` and hand them to the algorithm.
        With ``--on-failure shrink`` a dead peer is survived (``engine.recovery``): the
        step is taken again on the survivors, or counted if one of them had finished it."""
        from ..runtime.ulfm import RankFailure

        while True:
            try:
                return self._step_once(pieces)
            except RankFailure as exc:
                if self.t.recovery is None:
                    raise
                if self.t.recovery.recover(exc):
                    return None

    def _step_once(self, pieces):
        t = self.t
        t_compute = time.perf_counter()
        t.mark("compute", t.step)
        if t.fault is not None:
            t.fault.check(t.rank, t.step)
        t.lr = t.lr_at(t.step)
        loss = t.local_loss_grad(pieces)
        count = sum(len(rows) for _, _, rows in pieces)
        if t.fault is not None:
            t.fault.corrupt_grad(t.rank, t.step, t.algo.grad)
        t.mark("communicate", t.step)
        t_comm = time.perf_counter()
        out = t.algo.step(t.step, loss, count, t.lr, t.stop.requested)
        t.phase_time[1] += time.perf_counter() - t_comm
        t.phase_time[0] += t_comm - t_compute
        return out

    def _count_step(self, epoch: int, out) -> None:
        """The step counter and the optional per-step metrics record."""
        t = self.t
        t.step += 1
        every = t.cfg.metrics_every
        if every and t.step % every == 0:
            t.log.record({"type": "step", "epoch": epoch, "step": t.step,
                          "samples": t.step * t.n // t.steps_per_epoch,
                          "train_seconds": t.train_time + time.perf_counter() - t.t_epoch,
                          "train_loss": out.loss / out.count if out is not None and out.count else None,
                          "learning_rate": t.lr, "bytes_sent_received": t.counters.total})

    def _asynchronous_epoch_end(self, epoch: int, stopped_by: int) -> int:
        """NaN verdict (centre to every rank); the epoch's nominal step count; the
        epoch-end checkpoint (asynchronous runs checkpoint only here)."""
        t = self.t
        t.algo.finish_epoch()
        t.step = epoch * t.steps_per_epoch
        if t.cfg.checkpoint_every and t.step < t.total_steps and not stopped_by:
            t.mark("checkpoint", t.step, slow=True)
            t.save_checkpoint(t.step)
        return stopped_by
