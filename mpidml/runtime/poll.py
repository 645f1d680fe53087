"""One polling loop for every wait that must not busy-spin a core (or must give up).

MPICH's blocking calls (``Recv``, ``Waitall``, ``Barrier``) poll in a busy loop. A rank
that waits for a long time — a parameter server between messages, ranks waiting for
rank 0 to generate the default data set, every rank waiting for rank 0 to print an
error — would burn a core another rank needs on an oversubscribed node. ``Backoff``
(after mpi4py.futures' helper of the same name) polls ``spin`` times without sleeping,
then sleeps ``nap`` seconds between polls, the nap growing by ``growth`` per poll up to
``max_nap``; ``poll_until`` runs the loop with an optional deadline.

The price of a nap is latency: up to ``max_nap`` (plus the OS timer slack, ~50 µs on
Linux) on an event that happens while napping.
"""

from __future__ import annotations

import time

__all__ = ["Backoff", "poll_until"]


class Backoff:
    """``spin`` free polls, then sleeps of ``nap`` seconds growing ×``growth`` to ``max_nap``."""

    __slots__ = ("spin", "nap", "max_nap", "growth", "_polls", "_delay")

    def __init__(self, spin: int = 0, nap: float = 1e-3, max_nap: float | None = None, growth: float = 1.0):
        if spin < 0 or nap < 0 or growth < 1.0:
            raise ValueError(f"Backoff needs spin >= 0, nap >= 0, growth >= 1 (got {spin}, {nap}, {growth})")
        self.spin, self.nap, self.growth = int(spin), float(nap), float(growth)
        self.max_nap = self.nap if max_nap is None else max(float(max_nap), self.nap)
        self.reset()

    def reset(self) -> None:
        self._polls = 0
        self._delay = self.nap

    def sleep(self) -> None:
        """Called after each unsuccessful poll."""
        self._polls += 1
        if self._polls <= self.spin:
            return
        time.sleep(self._delay)
        self._delay = min(self.max_nap, self._delay * self.growth)


def poll_until(test, backoff: Backoff | None = None, timeout: float | None = None) -> bool:
    """Call ``test()`` until it returns true (→ True) or ``timeout`` seconds pass (→ False)."""
    backoff = Backoff() if backoff is None else backoff
    deadline = None if timeout is None else time.monotonic() + timeout
    while not test():
        if deadline is not None and time.monotonic() > deadline:
            return False
        backoff.sleep()
    return True
