"""``Trainer``: one configured training job on a communicator, knowing no algorithm by name.

    Trainer(cfg, comm).run()  ->  the summary dict, the same on every rank

What it does, in order: guards first (signal handlers and the stall watchdog cover
the whole run, start-up included), then set-up (``engine.setup``: data plan and
model asked of the algorithm class), the epochs (the algorithm's loop shape through
``engine.loop.EpochLoop``; evaluation by ``engine.evaluation``), and the end (final
checkpoint, summary, saved model). Everything around the loop is a hook
(``engine.hooks``). On a signal stop the checkpoint is written first and no
evaluation runs (a Slurm ``--signal`` window is short).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from typing import Any

import numpy as np

from ..algos.hogwild import hogwild_step
from ..data.batches import loss_grad_pieces
from ..optim import lr_at
from .config import TrainConfig
from .hooks import Hook, Hooks, ProgressHook, RisingObjectiveHook, RunLog, TimelineHook

__all__ = ["Trainer", "SLOW_PHASE_ALLOWANCE"]

#: seconds a phase that cannot beat the watchdog from inside may take at least (loading a
#: shard, compiling kernels, generating the default data, writing a checkpoint while the
#: other ranks wait): ``--stall-timeout`` applies there as max(limit, this)
SLOW_PHASE_ALLOWANCE = 120.0


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()[:16]


class Trainer:
    """Collective: train ``cfg`` on ``comm``.

    Args:
        cfg: the run's ``TrainConfig`` (not changed).
        comm: an mpi4py communicator (the CLI passes a duplicate of COMM_WORLD).
        model: a model instance or class following the ``mpidml.Model`` protocol, used
            instead of ``cfg.model`` (the Python API's bring-your-own-model path).
        hooks: more hooks (``engine.hooks.Hook``) called with the built-in ones.
        restore_signals: put the previous SIGTERM/SIGUSR1/SIGINT/SIGHUP handlers back at
            the end (the CLI keeps its own until exit, so a late signal cannot kill a
            finished run).
        stop: a ``runtime.signals.StopRequest`` installed earlier (the CLI installs one
            before MPI starts, so a signal during MPI start-up is not lost); None: the
            run installs its own.
    """

    # The run's state, filled in by engine/setup.py (set_up) before the first epoch.
    log: RunLog
    hooks: Hook
    timeline: TimelineHook
    coll: Any                   # comm.collectives.Collectives
    counters: Any               # its ByteCounter
    fault: Any                  # runtime.faults.FaultPlan | None
    algo_cls: type
    algo: Any                   # algos.base.Algorithm
    model: Any                  # the mpidml.Model being trained
    opt: Any
    optimizer_name: str
    shard: Any
    test: Any
    source: Any                 # data.batches row source
    stream: Any
    evaluator: Any
    ckpt: Any
    ckpt_lock: Any
    model_desc: dict
    params: np.ndarray
    scratch: np.ndarray
    n: int
    d: int
    n_classes: int
    steps_per_epoch: int
    total_steps: int
    start_step: int
    base_lr: float
    metric_key: str
    t_load: float
    t_compile: float
    threads: Any
    threads_applied: dict
    recovery: Any = None        # engine.recovery.Recovery with --on-failure shrink
    # ... and the loop's
    step: int
    lr: float
    t_epoch: float
    train_time: float
    phase_time: np.ndarray
    stopped_by: int

    def __init__(self, cfg: TrainConfig, comm, model=None, hooks=(), restore_signals: bool = True, stop=None):
        self.cfg = dataclasses.replace(cfg)       # a private copy: the defaults filled in below stay ours
        self.comm = comm
        self.user_model = model
        self.extra_hooks = list(hooks)
        self.restore_signals = restore_signals
        self._early_stop = stop
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> dict:
        from ..runtime.signals import StopRequest
        from ..runtime.watchdog import Watchdog

        self.t_start = time.perf_counter()
        self.stop = self._early_stop or StopRequest()   # (the CLI passes the ones it installed first)
        self.watchdog = Watchdog(self.cfg.stall_timeout, self.rank, self.size, comm=self.comm,
                                 liveness=self.cfg.liveness_timeout)
        self.watchdog.beat("start-up", -1, SLOW_PHASE_ALLOWANCE)
        try:
            from .setup import set_up
            set_up(self)
            self._train()
            return self._finish()
        finally:
            self.watchdog.stop()
            lock = getattr(self, "ckpt_lock", None)
            if lock is not None:      # an in-process caller may start another run on the directory
                lock.release()
            if self.restore_signals:
                self.stop.restore()

    def mark(self, phase: str, at_step: int, slow: bool = False) -> None:
        """Enter a phase: the watchdog's heartbeat (``slow``: a phase that cannot beat from
        inside, see ``SLOW_PHASE_ALLOWANCE``) and the hooks' event boundary (timeline)."""
        self.watchdog.beat(phase, at_step, SLOW_PHASE_ALLOWANCE if slow else 0.0)
        self.hooks.on_phase(phase, at_step)

    def install_hooks(self) -> None:
        """The built-in hooks (after set-up: they need the step counts), then the user's."""
        cfg = self.cfg
        self.timeline = TimelineHook(self.comm, cfg.timeline)
        progress = ProgressHook("none" if cfg.quiet else cfg.progress, self.rank, cfg.epochs,
                                self.steps_per_epoch, self.n, cfg.progress_every)
        self.hooks = Hooks([self.timeline, progress, RisingObjectiveHook(self.log), self.log, *self.extra_hooks])

    def lr_at(self, step: int) -> float:
        c = self.cfg
        return lr_at(step, self.total_steps, self.base_lr, c.lr_schedule, c.warmup_steps, c.lr_decay_every,
                     c.lr_gamma)

    def local_loss_grad(self, pieces) -> float:
        """This rank's summed loss over ``pieces``, gradient sums into ``algo.grad`` (or
        the Hogwild local step, which also applies it)."""
        if self.cfg.hogwild_threads:
            return hogwild_step(self.model, pieces, self.params, self.lr, self.algo.grad)
        return loss_grad_pieces(self.model, pieces, self.params, self.algo.grad, self.scratch)

    def evaluate(self):
        """Collective: the ``Evaluation`` of the model the algorithm evaluates."""
        return self.algo.evaluate(self.evaluator)

    def save_checkpoint(self, step_done: int) -> str | None:
        if self.ckpt is None:
            return None
        path = self.ckpt.save(step_done, {"epoch": step_done // self.steps_per_epoch,
                                          "step_in_epoch": step_done % self.steps_per_epoch},
                              self.algo.shared_state(), self.algo.rank_state())
        self.algo.control.hint = f"; last good checkpoint: {path}"
        return path

    def _train(self) -> None:
        from ..runtime.errors import MpidmlError
        from .loop import EpochLoop

        cfg, log = self.cfg, self.log
        self.step = self.start_step
        self.mark("evaluate", self.step)    # ends the start-up allowance: evaluation beats per chunk
        with self.counters.uncounted():
            self.initial = self.evaluate()
        log.info(f"epoch {self.start_step // self.steps_per_epoch:>3}/{cfg.epochs}  "
                 f"objective {self.initial.objective:.6f}")
        self.counters.reset()
        self.train_time = 0.0
        self.history: list[dict] = []
        self.stopped_by = 0
        self.lr = self.lr_at(self.step)
        loop = EpochLoop(self)
        if cfg.hogwild_threads:
            from ..algos.hogwild import start_hogwild
            start_hogwild(self.algo, cfg.hogwild_threads)
        self.hooks.on_start(self)
        for epoch in range(self.start_step // self.steps_per_epoch + 1, cfg.epochs + 1):
            self.t_epoch = time.perf_counter()
            self.phase_time = np.zeros(2)   # this rank's [compute, communicate] seconds in this epoch
            self.hooks.on_epoch_start(epoch, max(0, self.start_step - (epoch - 1) * self.steps_per_epoch))
            self.stopped_by = self.algo.run_epoch(loop, epoch)
            self.hooks.on_epoch_end()
            elapsed = time.perf_counter() - self.t_epoch
            self.train_time += elapsed
            if self.stopped_by:         # a signal: checkpoint at once, no evaluation (see _finish)
                log.record({"type": "stop", "epoch": epoch, "step": self.step, "signal": self.stopped_by,
                            "train_seconds": self.train_time})
                break
            rec = self._epoch_record(epoch, elapsed)
            if rec["objective"] is not None and not math.isfinite(rec["objective"]):
                raise MpidmlError(f"objective became {rec['objective']} at epoch {epoch} (step {self.step}); "
                                  f"lower --lr (now {cfg.lr})")
            self.history.append(rec)
            self.hooks.on_epoch(rec)
            metric = rec[self.metric_key]
            acc_s = f"  {self.metric_key} {metric:.4f}" if metric is not None else ""
            obj_s = (f"objective {rec['objective']:.6f}{acc_s}" if rec["objective"] is not None
                     else "(not evaluated: --eval-every)")
            log.info(f"epoch {epoch:>3}/{cfg.epochs}  {obj_s}  samples/s {self.n / elapsed:,.0f}  ({elapsed:.2f} s)")

    def _epoch_record(self, epoch: int, elapsed: float) -> dict:
        """Collective: evaluate if due, and the epoch's metrics record."""
        cfg = self.cfg
        ev = spread = None
        if epoch == cfg.epochs or (cfg.eval_every and epoch % cfg.eval_every == 0):
            self.mark("evaluate", self.step)
            with self.counters.uncounted():   # bytes count training traffic only
                ev = self.evaluate()
                spread = self.algo.disagreement()
        # Communication time = transfer + waiting for the slowest rank. The rank that
        # arrives last waits least, so the minimum over ranks estimates the transfer.
        times = np.array(self.comm.allgather(self.phase_time))
        transfer = float(times[:, 1].min())
        return {"type": "epoch", "epoch": epoch, "step": self.step, "samples": epoch * self.n,
                "train_seconds": self.train_time, "objective": ev.objective if ev else None,
                "grad_norm": ev.grad_norm if ev else None, self.metric_key: ev.metric if ev else None,
                "test_loss": ev.test_loss if ev else None,
                "learning_rate": self.lr_at(self.step - 1),
                "samples_per_second": self.n / elapsed,
                "bytes_communicated": max(self.comm.allgather(self.counters.total)),
                "compute_seconds": float(times[:, 0].max()), "communication_seconds": transfer,
                "wait_seconds": float((times[:, 1] - transfer).max()),
                "disagreement": spread}

    def _finish(self) -> dict:
        from ..runtime.errors import fail_together
        from ..runtime.signals import EXIT_STOPPED

        cfg, log, comm = self.cfg, self.log, self.comm
        self.mark("checkpoint", self.step, slow=True)
        final_ckpt = self.save_checkpoint(self.step)
        if self.ckpt is not None:
            self.ckpt.close()   # releases the checkpoint directory's lock
        if self.stopped_by:
            from ..runtime.signals import signal_name
            got = signal_name(self.stop.requested) if self.stop.requested else "sent to another rank"
            log.always(f"stopped by a signal at step {self.step} ({got}); "
                       + (f"checkpoint {final_ckpt}; continue with --resume" if final_ckpt
                          else "no --checkpoint-dir: nothing saved"))
            self.timeline.write()
            log.close()
            raise SystemExit(EXIT_STOPPED)
        self.mark("teardown", self.step, slow=True)
        self.timeline.write()
        if not self.history:   # resumed from a finished run: nothing left to do
            self.mark("evaluate", self.step)
            with self.counters.uncounted():
                ev = self.evaluate()
            self.history.append({"objective": ev.objective, "grad_norm": ev.grad_norm, self.metric_key: ev.metric})
        with self.counters.uncounted():
            final = self.algo.consensus()      # the model evaluated and saved (the replicas for sync)
        digests = comm.allgather(_digest(final))
        byte_counts = comm.allgather(self.counters.total)
        last = self.history[-1]
        summary = {
            "type": "summary", "epochs": cfg.epochs, "steps": self.step, "world_size": self.size,
            "objective_initial": self.initial.objective, "objective": last["objective"],
            "grad_norm": last["grad_norm"], self.metric_key: last[self.metric_key],
            "train_seconds": self.train_time, "startup_seconds": self.t_load + self.t_compile,
            "compile_seconds": self.t_compile, "load_seconds": self.t_load,
            "wall_seconds": time.perf_counter() - self.t_start,
            "samples_per_second": (self.n * (self.step - self.start_step) / self.steps_per_epoch / self.train_time
                                   if self.train_time else None),
            "bytes_communicated": max(byte_counts),
            "params_identical": len(set(digests)) == 1, "params_digest": digests[0],
            "checkpoint": final_ckpt, "resumed_from_step": self.start_step,
        }
        if self.recovery is not None:
            summary.update(self.recovery.report())
        extra = self.algo.report()
        if extra:
            summary.update(extra)
            log.info("  " + ", ".join(f"{k} {v}" for k, v in extra.items()))
        summary["allreduce_calls"] = dict(self.coll.calls)   # algorithm -> calls (training and evaluation)
        if self.coll.debug.on:
            summary["collectives_checked"] = self.coll.debug.total()
            log.info(f"collective debug mode: {self.coll.debug.total()} collectives checked on rank 0, "
                     f"all ranks matched")
        if cfg.save_model:
            from ..saved import save_model
            path = cfg.save_model

            def write_model():
                if self.rank == 0:
                    save_model(path, self.model_desc, final, dataclasses.asdict(cfg),
                               {k: v for k, v in summary.items() if k != "type"})
            fail_together(comm, f"saving the model to {cfg.save_model}", write_model)
        self.hooks.on_end(summary)
        if self.stream is not None:
            self.stream.close()
        self._print_done(summary)
        summary["params"] = final.copy()
        self.coll.release()
        return summary

    def _print_done(self, summary: dict) -> None:
        key = self.metric_key
        acc = summary[key]
        self.log.always(
            f"done: {self.cfg.epochs} epochs, {self.step} steps in {self.train_time:.2f} s training "
            f"(+ {summary['startup_seconds']:.2f} s start-up); objective {self.initial.objective:.6f} -> "
            f"{summary['objective']:.6f}" + (f", {key.replace('_', ' ')} {acc:.4f}" if acc is not None else "")
            + f"; {summary['bytes_communicated'] / 1e6:.1f} MB sent+received per rank; "
            + (f"replicas identical: {'yes' if summary['params_identical'] else 'NO'}" if self.algo.replicated else
               f"evaluated {self.algo.consensus_kind}")
            + (f"; survived {summary['failures_survived']} failure(s): {summary['initial_world_size']} -> "
               f"{self.size} rank(s)" if "failures_survived" in summary else ""))

