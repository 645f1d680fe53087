"""Gossip primitives on a topology: neighbour exchange and one mixing round.

Receives are posted before sends (``Irecv`` for every neighbour, then ``Isend``,
then ``Waitall``), so any graph is deadlock-free. Bytes are added to ``counters``.
"""

from __future__ import annotations

import numpy as np

from . import debug as _debug
from .common import ByteCounter, counters_or_default
from .tags import Tag

__all__ = ["neighbor_exchange", "gossip_round", "shift_exchange"]

_TAG_GOSSIP = int(Tag.GOSSIP)
_TAG_SHIFT = int(Tag.SHIFT)


def neighbor_exchange(comm, send: np.ndarray, neighbors: list[int], recv: list[np.ndarray], *,
                      counters: ByteCounter | None = None, debug: _debug.DebugMode | None = None) -> None:
    """Send ``send`` to every rank in ``neighbors`` and receive each neighbour's buffer
    into ``recv[k]`` (same order). Every rank calls it with its own neighbour list."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "neighbor_exchange", p2p={"to": neighbors, "send": send, "recv": recv}):
            return neighbor_exchange(comm, send, neighbors, recv, counters=counters, debug=dbg)
    counters = counters_or_default(counters)
    from mpi4py import MPI

    reqs = [comm.Irecv(recv[k], source=j, tag=_TAG_GOSSIP) for k, j in enumerate(neighbors)]
    reqs += [comm.Isend(send, dest=j, tag=_TAG_GOSSIP) for j in neighbors]
    MPI.Request.Waitall(reqs)
    counters.add(sent=send.nbytes * len(neighbors), received=sum(r.nbytes for r in recv))


def gossip_round(comm, x: np.ndarray, W: np.ndarray, neighbors: list[int],
                 scratch: list[np.ndarray], *, counters: ByteCounter | None = None,
                 debug: _debug.DebugMode | None = None) -> np.ndarray:
    """x ← W_ii·x + Σ_j W_ij·x_j over this rank's neighbours, in place (row ``rank`` of
    the mixing matrix ``W``); ``scratch`` holds one receive buffer per neighbour."""
    rank = comm.Get_rank()
    neighbor_exchange(comm, x, neighbors, scratch, counters=counters, debug=debug)
    x *= x.dtype.type(W[rank, rank])
    for j, xj in zip(neighbors, scratch):
        x += x.dtype.type(W[rank, j]) * xj
    return x


def shift_exchange(comm, send: np.ndarray, recv: np.ndarray, shift: int, *, counters: ByteCounter | None = None,
                   debug: _debug.DebugMode | None = None) -> None:
    """Directed exchange: send to (rank + shift) mod p, receive from (rank − shift) mod p
    (one round of a time-varying one-peer graph, e.g. push-sum)."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "shift_exchange", p2p={"shift": shift, "send": send, "recv": recv}):
            return shift_exchange(comm, send, recv, shift, counters=counters, debug=dbg)
    counters = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    req = comm.Irecv(recv, source=(rank - shift) % p, tag=_TAG_SHIFT)
    comm.Send(send, dest=(rank + shift) % p, tag=_TAG_SHIFT)
    req.Wait()
    counters.add(sent=send.nbytes, received=recv.nbytes)
