"""Fault injection for tests and demos: ``--inject-fault SPEC[,SPEC...]``.

    raise:R:S         rank R raises at global step S (while the others wait in the allreduce)
    nan:R:S           rank R's gradient becomes NaN at step S (the numerical guard must stop)
    sleep:R:S:SEC     rank R sleeps SEC seconds at step S (a straggler; or a stall for the watchdog)
    slow:R:SEC        rank R sleeps SEC seconds at every step (a persistent straggler)
    slow-eval:R:SEC   rank R sleeps SEC seconds in every chunk of every evaluation pass (a
                      long, healthy evaluation: the watchdog must not fire); R may be ``*``
    die:R:S           rank R kills itself (SIGKILL, no clean-up) at the start of step S: a dead
                      rank, for --on-failure shrink|abort
    ckpt-crash:K      rank 0 dies (os._exit) in the middle of writing its K-th checkpoint,
                      after the data is written and before the rename

A step-keyed fault fires once, at the first step >= S that the rank takes: asynchronous
workers (``--algo easgd_async``) number their own steps and jump to the next epoch's first
step when the centre ends an epoch, so a slow worker may never take step S itself. On
``--resume`` faults keyed before the resumed step are treated as already fired.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["InjectedFault", "FaultPlan", "parse_fault"]


class InjectedFault(RuntimeError):
    """The exception raised by an injected fault."""


@dataclass(frozen=True)
class _Fault:
    kind: str
    rank: int = 0
    step: int = 0
    seconds: float = 0.0
    named: int = -1      # the rank the spec named, once the world has shrunk (renumber)


class FaultPlan:
    """The parsed faults; the training loop asks it at each point where one may fire."""

    def __init__(self, faults: list[_Fault]):
        self.faults = faults
        self._checkpoints = 0
        self._fired: set[int] = set()

    def resume_at(self, step: int) -> None:
        """Training continues at ``step``: faults keyed before it do not fire."""
        self._fired.update(i for i, f in enumerate(self.faults)
                           if f.kind in _STEP_KEYED and f.step < step)

    def renumber(self, alive: list[int]) -> None:
        """The world shrank to the ranks ``alive`` (old numbers, in their new order):
        faults keep meaning the rank they named at the start; a dead rank's are dropped."""
        new = {old: i for i, old in enumerate(alive)}
        self.faults = [dataclasses.replace(f, rank=new.get(f.rank, -2), named=f.named if f.named >= 0 else f.rank)
                       if f.rank >= 0 else f for f in self.faults]

    def _due(self, kinds: tuple[str, ...], rank: int, step: int) -> list[_Fault]:
        """The faults of ``kinds`` on ``rank`` due at ``step`` (each fires once)."""
        due = []
        for i, f in enumerate(self.faults):
            if f.kind in kinds and f.rank == rank and 0 <= f.step <= step and i not in self._fired:
                self._fired.add(i)
                due.append(f)
        return due

    def check(self, rank: int, step: int) -> None:
        """Start of a step: raise or sleep."""
        for f in self.faults:
            if f.kind == "slow" and f.rank == rank:
                time.sleep(f.seconds)
        for f in self._due(("raise", "sleep", "die"), rank, step):
            if f.kind == "die":
                rank = f.named if f.named >= 0 else rank
                os.write(2, f"mpidml: injected fault: rank {rank} (pid {os.getpid()}) kills itself at step "
                            f"{step}\n".encode())
                os.kill(os.getpid(), signal.SIGKILL)
            if f.kind == "raise":
                raise InjectedFault(f"injected fault at step {step} on rank {rank}")
            time.sleep(f.seconds)

    def evaluation_chunk(self, rank: int) -> None:
        """Inside an evaluation pass, once per row chunk: sleep if asked to."""
        for f in self.faults:
            if f.kind == "slow-eval" and f.rank in (rank, -1):
                time.sleep(f.seconds)

    def corrupt_grad(self, rank: int, step: int, grad: np.ndarray) -> None:
        if self._due(("nan",), rank, step):
            grad[0] = np.nan

    def checkpoint_hook(self):
        """The crash hook for the next checkpoint write (None if it must succeed)."""
        self._checkpoints += 1
        if any(f.kind == "ckpt-crash" and f.step == self._checkpoints for f in self.faults):
            def crash(tmp_path):
                os.write(2, f"mpidml: injected crash while writing checkpoint {tmp_path}\n".encode())
                os._exit(9)
            return crash
        return None


_STEP_KEYED = ("raise", "nan", "sleep", "die")
_ARITY = {"raise": 2, "die": 2, "nan": 2, "sleep": 3, "slow": 2, "slow-eval": 2, "ckpt-crash": 1}


def parse_fault(spec: str | None) -> FaultPlan | None:
    """Parse the comma-separated fault list; ``None`` or ``""`` means no fault."""
    if not spec:
        return None
    faults = []
    for item in spec.split(","):
        kind, *args = item.strip().split(":")
        if kind not in _ARITY or len(args) != _ARITY[kind]:
            raise ValueError(f"--inject-fault: bad item {item!r}; expected raise:RANK:STEP, die:RANK:STEP, "
                             f"nan:RANK:STEP, sleep:RANK:STEP:SECONDS, slow:RANK:SECONDS, "
                             f"slow-eval:RANK|*:SECONDS or ckpt-crash:K")
        try:
            if kind == "ckpt-crash":
                faults.append(_Fault(kind, step=int(args[0])))
            elif kind == "slow":
                faults.append(_Fault(kind, int(args[0]), -1, float(args[1])))
            elif kind == "slow-eval":
                faults.append(_Fault(kind, -1 if args[0] == "*" else int(args[0]), -1, float(args[1])))
            elif kind == "sleep":
                faults.append(_Fault(kind, int(args[0]), int(args[1]), float(args[2])))
            else:
                faults.append(_Fault(kind, int(args[0]), int(args[1])))
        except ValueError:
            raise ValueError(f"--inject-fault: non-numeric field in {item!r}") from None
    return FaultPlan(faults)
