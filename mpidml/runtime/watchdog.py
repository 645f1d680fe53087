"""Stall watchdog: a rank that makes no progress for ``limit`` seconds reports where it
is and aborts the job (instead of every rank waiting forever).

The training loop calls ``beat(phase, step)`` when it enters a phase ("compute",
"allreduce", "checkpoint", …). A phase that cannot beat from inside (a kernel compile, a
shard read, a checkpoint write by rank 0 while the others wait) is entered with an
``allowance``: the limit for that phase is ``max(limit, allowance)``, so a short
``--stall-timeout`` does not kill a healthy start-up, and a stall there still ends the job.
A daemon thread checks once a second; on a stall it writes
``rank R: no progress for T s in <phase> at step S`` and calls
``MPI.COMM_WORLD.Abort``. Every stuck rank reports, so the ranks waiting in
"allreduce" name the ones that never arrived (those report "compute" or nothing).
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["Watchdog"]


class Watchdog:
    def __init__(self, limit: float, rank: int, size: int, on_stall=None):
        self.limit = float(limit)
        self.rank, self.size = rank, size
        self.phase, self.step = "start-up", -1
        self._last = time.monotonic()
        self._allowance = 0.0
        self._stop = threading.Event()
        self._on_stall = on_stall or self._abort
        self._thread = None
        if self.limit > 0:
            self._thread = threading.Thread(target=self._watch, name="mpidml-watchdog", daemon=True)
            self._thread.start()

    def beat(self, phase: str, step: int, allowance: float = 0.0) -> None:
        self.phase, self.step = phase, step
        self._allowance = allowance
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.limit / 4)):
            idle = time.monotonic() - self._last
            limit = max(self.limit, self._allowance)
            if idle > limit:
                self._on_stall(f"mpidml: rank {self.rank} of {self.size}: no progress for {idle:.0f} s "
                               f"in {self.phase} at step {self.step} (stall limit {limit:g} s); "
                               f"aborting the job\n")
                return

    def _abort(self, message: str) -> None:
        from .errors import abort_world

        sys.stderr.write(message)
        abort_world(1)

    def stop(self) -> None:
        self._stop.set()
