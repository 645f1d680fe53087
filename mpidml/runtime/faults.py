"""Fault injection for tests and demos: ``--inject-fault raise:RANK:STEP``.

``raise:R:S`` raises ``InjectedFault`` on rank R when it starts global step S, while
the other ranks are about to wait in the step's allreduce — the situation that
hangs a job without the abort hook.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InjectedFault", "FaultPlan", "parse_fault"]


class InjectedFault(RuntimeError):
    """The exception raised by an injected fault."""


@dataclass(frozen=True)
class FaultPlan:
    kind: str
    rank: int
    step: int

    def check(self, rank: int, step: int) -> None:
        if self.kind == "raise" and rank == self.rank and step == self.step:
            raise InjectedFault(f"injected fault at step {step} on rank {rank}")


def parse_fault(spec: str | None) -> FaultPlan | None:
    """Parse ``raise:RANK:STEP``; ``None`` or ``""`` means no fault."""
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] != "raise":
        raise ValueError(f"--inject-fault expects raise:RANK:STEP, got {spec!r}")
    try:
        rank, step = int(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--inject-fault expects integer RANK and STEP, got {spec!r}") from None
    return FaultPlan(parts[0], rank, step)
