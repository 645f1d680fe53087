"""Recursive-doubling allreduce: log2(p) full-vector exchanges, for small messages.

cost: ⌈log2 p⌉·(α + n·β + n·γ) (+ 2(α + nβ) when p is not a power of two)

Non-power-of-two p: with q = 2^⌊log2 p⌋ and e = p − q, ranks 0..2e−1 pair up first:
each even rank hands its vector to the odd rank above it and sits out; the
remaining q ranks (odd ranks < 2e, all ranks ≥ 2e) run recursive doubling on
virtual ids; at the end each odd rank hands the result back to its even partner.
IEEE addition is commutative, so both partners of an exchange compute the same
bits (a + b == b + a) and every rank ends bit-identical.
"""

from __future__ import annotations

import numpy as np

from . import debug as _debug
from .common import ByteCounter, check_buffer, counters_or_default, scale_mean, scratch_buffer
from .tags import Tag

__all__ = ["rd_allreduce"]

_TAG_RD = int(Tag.RD)


def _exchange(comm, buf, tmp, partner, ctr):
    comm.Sendrecv(buf, dest=partner, sendtag=_TAG_RD, recvbuf=tmp, source=partner, recvtag=_TAG_RD)
    ctr.add(sent=buf.nbytes, received=tmp.nbytes)


def rd_allreduce(comm, buf: np.ndarray, op: str = "sum", *, counters: ByteCounter | None = None,
                 debug: _debug.DebugMode | None = None) -> np.ndarray:
    """In-place recursive-doubling allreduce; same contract as ``ring_allreduce``."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "rd_allreduce", buf, op=op):
            return rd_allreduce(comm, buf, op, counters=counters, debug=dbg)
    if op not in ("sum", "avg"):
        raise ValueError(f"op must be 'sum' or 'avg', got {op!r}")
    check_buffer(buf, reduce=True)
    counters = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    if p == 1 or buf.size == 0:
        return buf
    q = 1 << (p.bit_length() - 1)
    extra = p - q
    tmp = scratch_buffer(buf.dtype, buf.size)
    if rank < 2 * extra:
        if rank % 2 == 0:   # hand over, wait for the result
            comm.Send(buf, dest=rank + 1, tag=_TAG_RD)
            comm.Recv(buf, source=rank + 1, tag=_TAG_RD)
            counters.add(sent=buf.nbytes, received=buf.nbytes)
            return buf
        comm.Recv(tmp, source=rank - 1, tag=_TAG_RD)
        counters.add(received=tmp.nbytes)
        np.add(buf, tmp, out=buf)
        vid = rank // 2
    else:
        vid = rank - extra
    mask = 1
    while mask < q:
        pv = vid ^ mask
        partner = pv * 2 + 1 if pv < extra else pv + extra
        _exchange(comm, buf, tmp, partner, counters)
        np.add(buf, tmp, out=buf)
        mask <<= 1
    if op == "avg":
        scale_mean(buf, p)
    if rank < 2 * extra:
        comm.Send(buf, dest=rank - 1, tag=_TAG_RD)
        counters.add(sent=buf.nbytes)
    return buf
