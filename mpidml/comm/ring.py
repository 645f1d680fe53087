"""Ring reduce-scatter, allgather and allreduce on flat numpy buffers.

Built on mpi4py point-to-point buffer calls (``Irecv`` posted before ``Send``), not
on ``comm.Allreduce``. Every rank passes a 1-D contiguous buffer of the same length
and dtype; the buffer is split into ``p`` segments whose lengths are agreed before
any data moves (``segment_counts``: balanced, remainder to the first segments, so
any length works, including 0 and lengths not divisible by ``p``)::

        rank 0 ──► rank 1 ──► rank 2 ──► … ──► rank p-1 ──┐
           ▲                                              │
           └──────────────────────────────────────────────┘

    reduce-scatter, step k = 0..p-2: rank r sends segment (r-k-1) mod p to r+1 and
        receives segment (r-k-2) mod p from r-1, adding it into its own copy.
        After p-1 steps rank r holds the full reduction of segment r.
    allgather, step k = 0..p-2: rank r sends segment (r-k) mod p, receives segment
        (r-k-1) mod p and stores it. After p-1 steps every rank has every segment.

    cost (n elements, α latency, β per element on the wire, γ per element added):
        reduce-scatter  (p-1)α + n(p-1)/p·β + n(p-1)/p·γ
        allgather       (p-1)α + n(p-1)/p·β
        allreduce       2(p-1)α + 2n(p-1)/p·β + n(p-1)/p·γ   (bandwidth-optimal)

Each reduced segment is computed on exactly one rank and then copied, so every
rank ends with bit-identical results. Receives are posted before the blocking
send, so the ring cannot deadlock whatever the MPI eager/rendezvous threshold.

Byte counts of every call are added to ``counters=`` (a ``common.ByteCounter``; by
default ``common.DEFAULT_COUNTERS``, also exported here as ``counters``); ``debug=`` is
the ``debug.DebugMode`` checking the call (default: ``debug.default``). Training passes
its ``Collectives``' own counters and mode.
"""

from __future__ import annotations

import numpy as np

from . import debug as _debug
from .common import (
    DEFAULT_COUNTERS,
    ByteCounter,
    allreduce_buffers,
    as_buffer,
    counters_or_default,
    scale_mean,
    scratch_buffer,
    segment_counts,
)
from .tags import Tag

__all__ = [
    "ByteCounter",
    "counters",
    "segment_counts",
    "ring_reduce_scatter",
    "ring_allgather",
    "ring_allreduce",
]

_TAG_REDUCE_SCATTER = int(Tag.RING_REDUCE_SCATTER)
_TAG_ALLGATHER = int(Tag.RING_ALLGATHER)

#: the default byte counters (``common.DEFAULT_COUNTERS``), kept under their old name
counters = DEFAULT_COUNTERS


# Pipelining: within a reduce-scatter step, segments longer than this many bytes are
# moved as several messages, so the addition of chunk i overlaps the transfer of i+1.
# Measured on one 2-core machine (p = 2, shared-memory transport): no gain and no loss
# (the transfer is itself a CPU copy); it pays where a NIC moves the data.
PIPELINE_CHUNK_BYTES = 1 << 20


def _chunks(offset: int, count: int, chunk: int):
    for a in range(offset, offset + count, chunk):
        yield a, min(offset + count, a + chunk)


def _reduce_scatter_inplace(comm, buf: np.ndarray, counts, offsets, ctr: ByteCounter) -> None:
    from mpi4py import MPI

    p, rank = comm.Get_size(), comm.Get_rank()
    left, right = (rank - 1) % p, (rank + 1) % p
    tmp = scratch_buffer(buf.dtype, max(counts))
    item = buf.itemsize
    chunk = max(1, PIPELINE_CHUNK_BYTES // item)
    for k in range(p - 1):
        s, r = (rank - k - 1) % p, (rank - k - 2) % p
        cs, cr = counts[s], counts[r]
        # receives first (into the scratch, chunk by chunk), then the sends
        recvs = [(a, b, comm.Irecv(tmp[a - offsets[r]:b - offsets[r]], source=left,
                                   tag=_TAG_REDUCE_SCATTER))
                 for a, b in _chunks(offsets[r], cr, chunk)]
        sends = [comm.Isend(buf[a:b], dest=right, tag=_TAG_REDUCE_SCATTER)
                 for a, b in _chunks(offsets[s], cs, chunk)]
        for a, b, req in recvs:   # add each chunk as soon as it is in
            req.Wait()
            seg = buf[a:b]
            np.add(seg, tmp[a - offsets[r]:b - offsets[r]], out=seg)
        MPI.Request.Waitall(sends)
        ctr.add(sent=cs * item, received=cr * item)


def _allgather_inplace(comm, buf: np.ndarray, counts, offsets, ctr: ByteCounter) -> None:
    p, rank = comm.Get_size(), comm.Get_rank()
    left, right = (rank - 1) % p, (rank + 1) % p
    item = buf.itemsize
    for k in range(p - 1):
        s, r = (rank - k) % p, (rank - k - 1) % p
        cs, cr = counts[s], counts[r]
        req = (comm.Irecv(buf[offsets[r]:offsets[r] + cr], source=left, tag=_TAG_ALLGATHER)
               if cr else None)
        if cs:
            comm.Send(buf[offsets[s]:offsets[s] + cs], dest=right, tag=_TAG_ALLGATHER)
            ctr.add(sent=cs * item)
        if req is not None:
            req.Wait()
            ctr.add(received=cr * item)


def ring_reduce_scatter(comm, buf: np.ndarray, op: str = "sum", *, counters: ByteCounter | None = None,
                        debug: _debug.DebugMode | None = None) -> np.ndarray:
    """In-place ring reduce-scatter.

    Every rank passes ``buf`` (same length and dtype on all ranks). On return rank
    ``r``'s segment ``r`` (see ``segment_counts``) holds the sum (``op="sum"``) or
    mean (``op="avg"``) over ranks; the other segments hold partial sums. Returns the
    view of this rank's segment. ``buf``: a numpy array or any writeable buffer-protocol
    array (a read-only one raises ``ValueError``: the result is written into it).
    """
    buf = as_buffer(buf, reduce=True, writeable=True)
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "ring_reduce_scatter", buf, op=op):
            return ring_reduce_scatter(comm, buf, op, counters=counters, debug=dbg)
    p, rank = comm.Get_size(), comm.Get_rank()
    counts, offsets = segment_counts(buf.size, p)
    _reduce_scatter_inplace(comm, buf, counts, offsets, counters_or_default(counters))
    mine = buf[offsets[rank]:offsets[rank] + counts[rank]]
    if op == "avg":
        scale_mean(mine, p)
    elif op != "sum":
        raise ValueError(f"op must be 'sum' or 'avg', got {op!r}")
    return mine


def ring_allgather(comm, buf: np.ndarray, *, counters: ByteCounter | None = None,
                   debug: _debug.DebugMode | None = None) -> np.ndarray:
    """In-place ring allgather.

    On entry rank ``r`` holds valid data in its segment ``r`` of ``buf`` (layout of
    ``segment_counts(buf.size, p)``); on return every rank holds every segment.
    ``buf`` must be writeable (a numpy array or buffer-protocol array).
    """
    buf = as_buffer(buf, reduce=False, writeable=True)
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "ring_allgather", buf):
            return ring_allgather(comm, buf, counters=counters, debug=dbg)
    counts, offsets = segment_counts(buf.size, comm.Get_size())
    _allgather_inplace(comm, buf, counts, offsets, counters_or_default(counters))
    return buf


def ring_allreduce(comm, buf: np.ndarray, op: str = "sum", *, out: np.ndarray | None = None,
                   counters: ByteCounter | None = None, debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Ring allreduce (reduce-scatter + allgather): in place (``out=None``: ``buf``
    overwritten and returned) or into ``out`` (same size and dtype; ``buf`` only read,
    so it may be read-only, e.g. ``np.asarray`` of a JAX array). Returns the result.

    Every rank passes a buffer of the same length and dtype (a numpy array or any
    buffer-protocol array); every rank gets back the bit-identical elementwise sum
    (``op="sum"``) or mean (``op="avg"``). A read-only ``buf`` without ``out`` raises
    ``ValueError`` saying to pass ``out=``.
    """
    buf, out = allreduce_buffers(buf, out)
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "ring_allreduce", buf, op=op):
            return ring_allreduce(comm, buf, op, out=out, counters=counters, debug=dbg)
    if op not in ("sum", "avg"):
        raise ValueError(f"op must be 'sum' or 'avg', got {op!r}")
    if out is not buf:
        out[:] = buf        # out of place: reduce in the output, the input is only read
    buf = out
    ctr = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    counts, offsets = segment_counts(buf.size, p)
    _reduce_scatter_inplace(comm, buf, counts, offsets, ctr)
    if op == "avg":
        scale_mean(buf[offsets[rank]:offsets[rank] + counts[rank]], p)
    _allgather_inplace(comm, buf, counts, offsets, ctr)
    return buf
