"""The control slots of a fused collective buffer: four named numbers per rank
(loss, count, stop, nan) that every algorithm sums at its control points. Kept apart
from ``collectives`` so that light modules (the algorithm registry, ``--help``) can
name the layout without importing MPI."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ControlValues", "ControlLayout", "CONTROL"]


class ControlValues(NamedTuple):
    """One rank's (or, after the sum, all ranks') control numbers."""

    loss: float = 0.0      # summed loss since the previous control point
    count: float = 0.0     # type: ignore[assignment]  # samples behind it (shadows tuple.count, unused here)
    stop: float = 0.0      # ranks asking to stop (SIGTERM/SIGUSR1)
    nan: float = 0.0       # ranks whose loss or gradient went NaN/inf


class ControlLayout:
    """Named slots of ``ControlValues`` in a float buffer (the tail of a fused buffer)."""

    def __init__(self, fields=ControlValues._fields):
        self.fields = tuple(fields)
        self.size = len(self.fields)
        self._index = {f: i for i, f in enumerate(self.fields)}

    def offset(self, field: str) -> int:
        """Position of ``field`` in the layout (for protocols that read one slot)."""
        return self._index[field]

    def pack(self, out: np.ndarray, values: ControlValues) -> None:
        out[:self.size] = values

    def unpack(self, buf: np.ndarray) -> ControlValues:
        return ControlValues(*(float(v) for v in buf[:self.size]))


CONTROL = ControlLayout()
