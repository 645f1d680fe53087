"""Per-rank timeline of training phases, written as Chrome-trace JSON (Perfetto, chrome://tracing).

Each rank records complete events (``ph: "X"``) for its phases — ``compute``,
``allreduce``, ``evaluate``, ``checkpoint`` — with the step as an argument. At the end
rank 0 gathers every rank's events and writes one file; ``pid`` is the rank, so each
rank is one row and a straggler shows as the others' long ``allreduce`` bars (that
is where they wait for it). Timestamps are microseconds since a common origin taken
just after a barrier, so the rows line up to within the barrier's skew.
"""

from __future__ import annotations

import json
import time

__all__ = ["Timeline"]


class Timeline:
    """Cheap event recorder: ``with tl.phase("compute", step): ...`` or begin/end."""

    def __init__(self, comm, enabled: bool = True, max_events: int = 2_000_000):
        self.comm = comm
        self.enabled = enabled
        self.events: list[tuple[str, float, float, int]] = []
        self.max_events = max_events
        self._open: tuple[str, float, int] | None = None
        if enabled:
            comm.Barrier()
        self.origin = time.perf_counter()

    def begin(self, name: str, step: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._open is not None:
            self._close(now)
        self._open = (name, now, step)

    def end(self) -> None:
        if self.enabled and self._open is not None:
            self._close(time.perf_counter())

    def _close(self, now: float) -> None:
        name, t0, step = self._open
        self._open = None
        if len(self.events) < self.max_events:
            self.events.append((name, t0, now, step))

    def write(self, path: str) -> None:
        """Collective: gather every rank's events; rank 0 writes ``path``."""
        self.end()
        rank = self.comm.Get_rank()
        mine = [{"name": n, "ph": "X", "pid": rank, "tid": 0, "ts": round((a - self.origin) * 1e6, 3),
                 "dur": round((b - a) * 1e6, 3), "args": {"step": s}} for n, a, b, s in self.events]
        gathered = self.comm.gather(mine, root=0)
        if rank == 0:
            events = [e for per_rank in gathered for e in per_rank]
            meta = [{"name": "process_name", "ph": "M", "pid": r, "args": {"name": f"rank {r}"}}
                    for r in range(self.comm.Get_size())]
            from .runtime.atomic import atomic_path

            with atomic_path(path) as tmp:
                with open(tmp, "w") as fh:
                    json.dump({"traceEvents": meta + events, "displayTimeUnit": "ms"}, fh)
