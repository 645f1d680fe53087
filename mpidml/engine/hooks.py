"""What happens around the training loop, as hooks the ``Trainer`` calls.

A hook is any object with some of these methods (``Hook`` has them all as no-ops):

    on_start(trainer)                  set-up done, before the first epoch
    on_phase(phase, step)              entering "compute", "communicate", "evaluate", ...
    on_epoch_start(epoch, first_step)  first_step > 0 when resuming mid-epoch
    on_step(step_in_epoch, outcome)    a control point (``algos.Outcome``) inside the epoch
    on_epoch_end()                     the epoch's steps are done (before its evaluation)
    on_epoch(record)                   the epoch's metrics record (after its evaluation)
    on_end(summary)                    the run's summary (every rank)

The built-in ones: ``RunLog`` (rank-0 lines and the JSON-lines metrics file),
``TimelineHook`` (Chrome trace), ``ProgressHook`` (in-epoch bar or lines),
``RisingObjectiveHook`` (a warning when an epoch's objective rises). The stall watchdog is
not a hook: the ``Trainer`` beats it directly, before any hook exists. A user passes more
with ``Trainer(..., hooks=[...])`` or ``mpidml.fit(..., hooks=[...])``.
"""

from __future__ import annotations

import json
import os

__all__ = ["Hook", "Hooks", "RunLog", "TimelineHook", "ProgressHook", "RisingObjectiveHook"]


class Hook:
    """Base class with every hook method as a no-op."""

    def on_start(self, trainer) -> None: ...
    def on_phase(self, phase: str, step: int) -> None: ...
    def on_epoch_start(self, epoch: int, first_step: int) -> None: ...
    def on_step(self, step_in_epoch: int, outcome) -> None: ...
    def on_epoch_end(self) -> None: ...
    def on_epoch(self, record: dict) -> None: ...
    def on_end(self, summary: dict) -> None: ...


def _defines(hook, name: str) -> bool:
    """``hook`` has its own ``name`` (not the base class's no-op)."""
    own = getattr(type(hook), name, None)
    return callable(getattr(hook, name, None)) and own is not getattr(Hook, name)


class Hooks(Hook):
    """Calls each hook's method in order (a hook may define only some of the methods); the
    bound methods are looked up once, leaving out ``Hook``'s inherited no-ops, since
    ``on_phase`` runs twice per step."""

    def __init__(self, hooks):
        self.hooks = list(hooks)
        self._fns = {name: [getattr(h, name) for h in self.hooks if _defines(h, name)]
                     for name in ("on_start", "on_phase", "on_epoch_start", "on_step", "on_epoch_end",
                                  "on_epoch", "on_end")}

    def on_start(self, trainer) -> None:
        for fn in self._fns["on_start"]:
            fn(trainer)

    def on_phase(self, phase: str, step: int) -> None:
        for fn in self._fns["on_phase"]:
            fn(phase, step)

    def on_epoch_start(self, epoch: int, first_step: int) -> None:
        for fn in self._fns["on_epoch_start"]:
            fn(epoch, first_step)

    def on_step(self, step_in_epoch: int, outcome) -> None:
        for fn in self._fns["on_step"]:
            fn(step_in_epoch, outcome)

    def on_epoch_end(self) -> None:
        for fn in self._fns["on_epoch_end"]:
            fn()

    def on_epoch(self, record: dict) -> None:
        for fn in self._fns["on_epoch"]:
            fn(record)

    def on_end(self, summary: dict) -> None:
        for fn in self._fns["on_end"]:
            fn(summary)


class RunLog(Hook):
    """Rank-0 output and the optional JSON-lines metrics file."""

    def __init__(self, rank: int, quiet: bool, metrics_path: str | None):
        self.rank = rank
        self.quiet = quiet
        self.fh = None
        if metrics_path and rank == 0:
            parent = os.path.dirname(os.path.abspath(metrics_path))
            os.makedirs(parent, exist_ok=True)
            self.fh = open(metrics_path, "w")

    def info(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(msg, flush=True)

    def always(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)

    def record(self, obj: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(obj) + "\n")
            self.fh.flush()

    def on_epoch(self, record: dict) -> None:
        self.record(record)

    def on_end(self, summary: dict) -> None:
        self.record(summary)
        self.close()

    def close(self) -> None:
        if self.fh:
            self.fh.close()
            self.fh = None


class RisingObjectiveHook(Hook):
    """Warn once (rank 0, even with -q) when an evaluated epoch objective exceeds the
    previous evaluated one (the initial objective for the first) by more than
    ``tolerance`` × max(|previous|, 1e-12): a rise usually means the run is diverging
    (lr too large for the algorithm). Writes a ``{"type": "warning"}`` metrics record."""

    def __init__(self, log: RunLog, tolerance: float = 1e-3):
        self.log = log
        self.tolerance = float(tolerance)
        self.previous: float | None = None
        self.warned = False
        self.lr = None

    def on_start(self, trainer) -> None:
        self.previous = trainer.initial.objective
        self.lr = trainer.cfg.lr

    def on_epoch(self, record: dict) -> None:
        obj = record.get("objective")
        if obj is None:
            return
        prev, self.previous = self.previous, obj
        if self.warned or prev is None or not obj > prev + self.tolerance * max(abs(prev), 1e-12):
            return
        self.warned = True
        epoch = record.get("epoch")
        self.log.always(f"warning: the objective rose at epoch {epoch}: {prev:.6f} -> {obj:.6f} "
                        f"(+{(obj - prev) / max(abs(prev), 1e-12):.2%}); the run may be diverging: "
                        f"lower --lr (now {self.lr:g}) or --momentum (warned once)")
        self.log.record({"type": "warning", "epoch": epoch, "step": record.get("step"),
                         "what": "objective_rose", "previous": prev, "objective": obj})


class TimelineHook(Hook):
    """Phase boundaries become timeline events; the trace is written at the end."""

    def __init__(self, comm, path: str | None):
        from ..timeline import Timeline

        self.comm, self.path = comm, path
        self.timeline = Timeline(comm, enabled=bool(path))

    def on_phase(self, phase: str, step: int) -> None:
        self.timeline.begin(phase, step)

    def on_epoch(self, record: dict) -> None:
        self.timeline.end()

    def write(self) -> None:
        """Collective: write the trace (every rank learns if it failed)."""
        if self.path:
            from ..runtime.errors import fail_together
            self.timeline.end()
            fail_together(self.comm, f"writing the timeline {self.path}", self.timeline.write, self.path)


class ProgressHook(Hook):
    """Progress inside an epoch on rank 0's stderr (``mpidml.progress``)."""

    def __init__(self, mode: str, rank: int, epochs: int, steps_per_epoch: int, rows: int, every: float):
        from ..progress import Progress

        self.steps_per_epoch = steps_per_epoch
        self.progress = Progress(mode, rank, epochs, steps_per_epoch, rows, every=every)

    def on_epoch_start(self, epoch: int, first_step: int) -> None:
        self.progress.start_epoch(epoch, first_step)

    def on_step(self, step_in_epoch: int, outcome) -> None:
        if step_in_epoch < self.steps_per_epoch:
            self.progress.update(step_in_epoch, outcome.loss, outcome.count)

    def on_epoch_end(self) -> None:
        self.progress.end_epoch()
