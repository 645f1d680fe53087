"""Broadcast from a root: binomial tree, pipelined chain, and shared-window single copy.

    tree   ⌈log2 p⌉ rounds of whole messages: ⌈log2 p⌉(α + nβ)       small messages
    chain  root → root+1 → … in chunks, each rank forwarding chunk i while chunk i+1
           arrives: (p − 2 + n/c)(α + cβ) for chunk size c              large messages
    shm    the root writes once into its window slot; every other rank of the node
           copies from there (one copy per rank, no messages)
"""

from __future__ import annotations

import numpy as np

from . import debug as _debug
from .common import ByteCounter, check_buffer, counters_or_default
from .tags import Tag

__all__ = ["tree_bcast", "chain_bcast", "shm_bcast"]

_TAG_BCAST = int(Tag.BCAST)
CHAIN_CHUNK_BYTES = 1 << 18


def tree_bcast(comm, buf: np.ndarray, root: int = 0, *, counters: ByteCounter | None = None,
               debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Binomial-tree broadcast of ``buf`` from ``root`` (in place on the other ranks)."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "tree_bcast", buf, root=root):
            return tree_bcast(comm, buf, root, counters=counters, debug=dbg)
    check_buffer(buf, reduce=False)
    counters = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    vr = (rank - root) % p
    mask = 1
    while mask < p:
        if vr & mask:
            comm.Recv(buf, source=(vr - mask + root) % p, tag=_TAG_BCAST)
            counters.add(received=buf.nbytes)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if vr + mask < p:
            comm.Send(buf, dest=(vr + mask + root) % p, tag=_TAG_BCAST)
            counters.add(sent=buf.nbytes)
        mask >>= 1
    return buf


def chain_bcast(comm, buf: np.ndarray, root: int = 0, *, counters: ByteCounter | None = None,
                debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Pipelined chain broadcast: chunks flow root → root+1 → … → root−1."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "chain_bcast", buf, root=root):
            return chain_bcast(comm, buf, root, counters=counters, debug=dbg)
    check_buffer(buf, reduce=False)
    counters = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    if p == 1 or buf.size == 0:
        return buf
    vr = (rank - root) % p
    prev, nxt = (rank - 1) % p, (rank + 1) % p
    chunk = max(1, CHAIN_CHUNK_BYTES // buf.itemsize)
    pending = None
    for a in range(0, buf.size, chunk):
        piece = buf[a:a + chunk]
        if vr > 0:
            comm.Recv(piece, source=prev, tag=_TAG_BCAST)
            counters.add(received=piece.nbytes)
        if vr < p - 1:
            if pending is not None:
                pending.Wait()
            pending = comm.Isend(piece, dest=nxt, tag=_TAG_BCAST)
            counters.add(sent=piece.nbytes)
    if pending is not None:
        pending.Wait()
    return buf


def shm_bcast(engine, buf: np.ndarray, root: int = 0, *, counters: ByteCounter | None = None,
              debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Broadcast inside a node through ``engine``'s shared window (``ShmAllreduce``)."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(engine.comm, "shm_bcast", buf, root=root):
            return shm_bcast(engine, buf, root, counters=counters, debug=dbg)
    counters = counters_or_default(counters)
    n = buf.size
    if engine.rank == root:
        slot = engine.buffer(n)
        if slot.ctypes.data != buf.ctypes.data:
            slot[:] = buf
        counters.add(sent=(engine.p - 1) * buf.nbytes)
    engine.fence()
    if engine.rank != root:
        buf[:] = engine.table[root, :n]
        counters.add(received=buf.nbytes)
    engine.fence()
    return buf
