"""Point-to-point waits that leave the CPU to others while nothing arrives.

MPICH's blocking ``Recv`` / ``Waitall`` poll the network in a busy loop. A rank that
only answers messages (a parameter server, the EASGD centre) or a worker held back by
a staleness bound would then burn a core doing nothing — on an oversubscribed node,
the core the computing ranks need. These helpers poll ``spin`` times, then sleep
``nap`` seconds between polls: the price is up to about ``nap`` (plus the OS timer
slack, ~50 µs on Linux) of added latency per message that arrives while napping.
The loop is ``runtime.poll`` (one polling helper for every such wait).
"""

from __future__ import annotations

from ..runtime.poll import Backoff, poll_until

__all__ = ["polite_wait", "polite_recv"]

SPIN, NAP = 100, 50e-6


def polite_wait(requests: list, spin: int = SPIN, nap: float = NAP) -> None:
    """Wait for every request in ``requests`` (as ``MPI.Request.Waitall``)."""
    from mpi4py import MPI

    poll_until(lambda: MPI.Request.Testall(requests), Backoff(spin, nap))


def polite_recv(comm, buf, status, spin: int = SPIN, nap: float = NAP) -> None:
    """Receive the next message from any source with any tag into ``buf``; ``status``
    tells the source and tag."""
    from mpi4py import MPI

    poll_until(lambda: comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status), Backoff(spin, nap))
    comm.Recv(buf, source=status.Get_source(), tag=status.Get_tag(), status=status)
