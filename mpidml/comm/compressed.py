"""Reductions of compressed gradients whose bytes do not grow linearly with p.

Gathering every rank's payload (``codecs.allgather_sum``) costs each rank (p − 1)
payloads: at p = 8 fp16 moved twice the bytes of an uncompressed ring allreduce. The
collectives here reduce instead, on mpi4py point-to-point calls (receives posted before
sends, so no exchange can deadlock), with the segment layout of ``common.segment_counts``
(segment s of the n elements is owned by rank s)::

  fp16_allreduce     ring reduce-scatter of fp16 segments with fp32 accumulation, then a
                     ring allgather of the owners' fp16 segments. Each hop receives an fp16
                     segment, adds it into its fp32 accumulator (its own gradient, exact)
                     and re-casts the partial sum to send it on. Each rank sends and
                     receives 2(p−1)/p·n·2 bytes (half of an fp32 ring allreduce), at
                     any p. A small ``tail`` (the control slots) is summed in its own dtype,
                     riding with segment p−1's messages: one collective per step.
  sparse_allreduce   top-k pairs: a direct reduce-scatter by index range (each rank sends
                     owner o only its (index, value) pairs inside o's range: ≈ k(p−1)/p
                     pairs in all, at any p), the owner sums them densely, then a ring
                     allgather of each summed segment, dense or sparse, whichever is
                     smaller (sparse while nnz·(4 + itemsize) < length·itemsize).
  qsgd_allreduce     QSGD: a direct reduce-scatter of each rank's int8 levels by segment
                     (with its float32 norm), the owner decodes and sums them, re-quantises
                     the summed segment (its own norm, the owner's random stream; unbiased)
                     and the int8 segments are allgathered: ≈ 2(p−1)/p·n bytes each way.

Every reduced segment is computed once, on its owner, and every rank (the owner too)
decodes the same bytes, so all ranks end with identical bits. Messages whose length
varies (sparse segments) are received into buffers of their largest possible size and
their length read from the ``Status``. Bytes moved are added to ``counters``.
"""

from __future__ import annotations

import numpy as np

from . import debug as _debug
from .common import ByteCounter, counters_or_default, segment_counts
from .tags import Tag

__all__ = ["fp16_allreduce", "sparse_allreduce", "qsgd_allreduce", "accumulator_dtype"]

_RS = int(Tag.COMPRESSED_RS)
_AG = int(Tag.COMPRESSED_AG)
_IDX = np.dtype(np.int32)


def accumulator_dtype(dtype) -> np.dtype:
    """The dtype partial sums are kept in: float32, or float64 for float64 gradients."""
    return np.promote_types(np.dtype(dtype), np.float32)


def _ring_allgather_blocks(comm, blocks: list[np.ndarray], lengths: list[int], ctr: ByteCounter) -> None:
    """Ring allgather of byte blocks whose lengths only their owner knows.

    ``blocks[s]`` is a uint8 buffer of segment s's largest possible size; on entry this
    rank's block holds ``lengths[rank]`` valid bytes; on return every ``lengths[s]`` is
    filled in and ``blocks[s][:lengths[s]]`` holds owner s's bytes (step k: send block
    rank−k to the right, receive block rank−k−1 from the left, forward it next step)."""
    from mpi4py import MPI

    p, rank = comm.Get_size(), comm.Get_rank()
    left, right = (rank - 1) % p, (rank + 1) % p
    status = MPI.Status()
    for k in range(p - 1):
        s, r = (rank - k) % p, (rank - k - 1) % p
        req = comm.Irecv(blocks[r], source=left, tag=_AG)
        comm.Send(blocks[s][:lengths[s]], dest=right, tag=_AG)
        req.Wait(status)
        lengths[r] = status.Get_count(MPI.BYTE)
        ctr.add(sent=lengths[s], received=lengths[r])


def _direct_reduce_scatter(comm, sends: list[np.ndarray], capacity: int, ctr: ByteCounter) -> list[np.ndarray]:
    """Every rank sends ``sends[o]`` (uint8) to each owner o ≠ rank and receives one
    message of at most ``capacity`` bytes from every other rank; returns the received
    messages by source rank (``sends[rank]`` in this rank's own place)."""
    from mpi4py import MPI

    p, rank = comm.Get_size(), comm.Get_rank()
    others = [(rank + j) % p for j in range(1, p)]
    bufs = {src: np.empty(max(capacity, 1), dtype=np.uint8) for src in others}
    statuses = [MPI.Status() for _ in others]
    recvs = [comm.Irecv(bufs[src][:capacity], source=src, tag=_RS) for src in others]   # receives first
    sent = [comm.Isend(sends[dst], dest=dst, tag=_RS) for dst in reversed(others)]
    MPI.Request.Waitall(recvs, statuses)
    MPI.Request.Waitall(sent)
    got = [sends[rank]] * p
    for src, st in zip(others, statuses):
        got[src] = bufs[src][:st.Get_count(MPI.BYTE)]
    ctr.add(sent=sum(sends[d].nbytes for d in others), received=sum(got[s].nbytes for s in others))
    return got


# ---- fp16 ----------------------------------------------------------------------------------

def fp16_allreduce(comm, g: np.ndarray, out: np.ndarray, *, tail: np.ndarray | None = None,
                   counters: ByteCounter | None = None, debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Collective: ``out`` = Σ over ranks of ``g`` with fp16 on the wire.

    Every rank passes ``g`` (1-D float32 or float64, same length everywhere) and ``out``
    (same length; float32/float64). Partial sums are accumulated in float32 (float64 for
    float64 ``g``) and rounded to fp16 once per hop; every rank gets the identical fp16
    sum, cast to ``out.dtype``. ``tail`` (optional, float32/float64, same length and dtype
    everywhere; sync's control slots) is summed in its own dtype, in place, riding with
    segment p−1's messages. Overflow (|sum| > 65504) gives inf, as a float16
    cast does. Returns ``out``."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "fp16_allreduce", g):
            return fp16_allreduce(comm, g, out, tail=tail, counters=counters, debug=dbg)
    ctr = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    n = g.size
    if out.size != n:
        raise ValueError(f"fp16_allreduce: out has {out.size} elements, g has {n}")
    if p == 1:
        out[:] = g.astype(np.float16)
        return out
    counts, offsets = segment_counts(n, p)
    ntail = 0 if tail is None else tail.nbytes
    if tail is not None and tail.dtype.kind != "f":
        raise TypeError(f"fp16_allreduce: tail must be float32 or float64, not {tail.dtype}")
    tdt = np.dtype(np.float64) if tail is None else tail.dtype   # (used only when there is a tail)
    carrier = p - 1                          # the segment whose messages carry the tail
    acc = g.astype(accumulator_dtype(g.dtype))   # this rank's own contribution, exact
    cap = 2 * max(counts) + ntail
    sbuf, rbuf = np.empty(cap, np.uint8), np.empty(cap, np.uint8)
    left, right = (rank - 1) % p, (rank + 1) % p

    def size(seg):
        return 2 * counts[seg] + (ntail if seg == carrier else 0)

    # reduce-scatter: step k sends segment (rank-k-1) mod p, receives (rank-k-2) mod p
    for k in range(p - 1):
        s, r = (rank - k - 1) % p, (rank - k - 2) % p
        req = comm.Irecv(rbuf[:size(r)], source=left, tag=_RS)
        a = offsets[s]
        sbuf[:2 * counts[s]].view(np.float16)[:] = acc[a:a + counts[s]]
        if s == carrier and ntail:
            sbuf[2 * counts[s]:size(s)].view(tdt)[:] = tail
        comm.Send(sbuf[:size(s)], dest=right, tag=_RS)
        req.Wait()
        a = offsets[r]
        seg = acc[a:a + counts[r]]
        np.add(seg, rbuf[:2 * counts[r]].view(np.float16), out=seg)
        if r == carrier and tail is not None:
            tail += rbuf[2 * counts[r]:size(r)].view(tdt)
        ctr.add(sent=size(s), received=size(r))
    # allgather of the owners' fp16 segments (the owner casts its accumulator once)
    blocks = [np.empty(size(s), np.uint8) for s in range(p)]
    mine = blocks[rank]
    a = offsets[rank]
    mine[:2 * counts[rank]].view(np.float16)[:] = acc[a:a + counts[rank]]
    if rank == carrier and ntail:
        mine[2 * counts[rank]:].view(tdt)[:] = tail
    lengths = [size(s) for s in range(p)]
    _ring_allgather_blocks(comm, blocks, lengths, ctr)
    for s in range(p):
        a = offsets[s]
        out[a:a + counts[s]] = blocks[s][:2 * counts[s]].view(np.float16)
    if tail is not None and ntail:
        tail[:] = blocks[carrier][2 * counts[carrier]:].view(tdt)   # the carrier's bits everywhere
    return out


# ---- top-k pairs -----------------------------------------------------------------------------

def sparse_allreduce(comm, idx: np.ndarray, val: np.ndarray, out: np.ndarray, max_pairs: int, *,
                     counters: ByteCounter | None = None, debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Collective: ``out`` = Σ over ranks of the sparse vectors (``idx``, ``val``).

    Every rank passes sorted, distinct int32 indices in [0, out.size), values of
    ``out.dtype`` (at most ``max_pairs`` pairs; ``max_pairs`` the same on every rank: top-k's
    k) and ``out`` (same length everywhere).
    Every rank gets the identical dense sum in ``out`` (each element summed on its owner
    in rank order). Returns ``out``."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "sparse_allreduce", out):
            return sparse_allreduce(comm, idx, val, out, max_pairs, counters=counters, debug=dbg)
    ctr = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    n, dt = out.size, out.dtype
    if idx.size != val.size or idx.size > max_pairs:
        raise ValueError(f"sparse_allreduce: {idx.size} indices, {val.size} values, max_pairs {max_pairs}")
    val = np.ascontiguousarray(val, dtype=dt)
    idx = np.ascontiguousarray(idx, dtype=_IDX)
    counts, offsets = segment_counts(n, p)
    pair = _IDX.itemsize + dt.itemsize
    bounds = np.searchsorted(idx, np.array(offsets + [n]))
    sends = []
    for o in range(p):
        lo, hi = bounds[o], bounds[o + 1]
        msg = np.empty((hi - lo) * pair, np.uint8)
        c = hi - lo
        msg[:4 * c].view(_IDX)[:] = idx[lo:hi]
        msg[4 * c:].view(dt)[:] = val[lo:hi]
        sends.append(msg)
    # a rank sends an owner at most min(max_pairs, the owner's length) pairs
    cap = min(int(max_pairs), counts[rank]) * pair
    got = _direct_reduce_scatter(comm, sends, cap, ctr) if p > 1 else sends
    a, c = offsets[rank], counts[rank]
    acc = np.zeros(c, dt)
    for msg in got:            # rank order: the same summation order whatever arrived first
        m = msg.size // pair
        acc[msg[:4 * m].view(_IDX) - a] += msg[4 * m:].view(dt)
    # my summed segment, dense or sparse (sparse only when strictly smaller)
    blocks = [np.empty(counts[s] * dt.itemsize, np.uint8) for s in range(p)]
    nz = np.flatnonzero(acc)
    if nz.size * pair < c * dt.itemsize:
        m = nz.size
        blocks[rank][:4 * m].view(_IDX)[:] = nz + a
        blocks[rank][4 * m:m * pair].view(dt)[:] = acc[nz]
        lengths = [m * pair if s == rank else 0 for s in range(p)]
    else:
        blocks[rank].view(dt)[:] = acc
        lengths = [c * dt.itemsize if s == rank else 0 for s in range(p)]
    if p > 1:
        _ring_allgather_blocks(comm, blocks, lengths, ctr)
    for s in range(p):
        a, c = offsets[s], counts[s]
        b, length = blocks[s], lengths[s]
        if length == c * dt.itemsize:                     # dense
            out[a:a + c] = b.view(dt)
        else:                                             # sparse: length // pair pairs
            m = length // pair
            out[a:a + c] = 0
            out[b[:4 * m].view(_IDX)] = b[4 * m:m * pair].view(dt)
    return out


# ---- QSGD ------------------------------------------------------------------------------------

def qsgd_allreduce(comm, codec, g: np.ndarray, out: np.ndarray, *, counters: ByteCounter | None = None,
                   debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Collective: ``out`` ≈ Σ over ranks of ``g``, unbiased, with int8 levels on the wire.

    Every rank passes its ``codec`` (``codecs.QSGD``, the same levels everywhere), ``g``
    and ``out`` (same length everywhere). Each rank quantises ``g`` once (one norm), sends
    owner o the levels of segment o and its norm; the owner sums the decoded segments in
    rank order, re-quantises the sum with its own norm and random stream, and the int8
    segments are allgathered. Every rank gets identical bits. Returns ``out``."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "qsgd_allreduce", g, op=f"levels{codec.levels}"):
            return qsgd_allreduce(comm, codec, g, out, counters=counters, debug=dbg)
    ctr = counters_or_default(counters)
    p, rank = comm.Get_size(), comm.Get_rank()
    n = g.size
    counts, offsets = segment_counts(n, p)
    norm, q = codec.quantize(g)
    if p == 1:                                         # nothing to reduce: decode once
        out[:] = q.astype(out.dtype) * out.dtype.type(norm[0] / codec.levels)
        return out
    sends = []
    for o in range(p):
        msg = np.empty(4 + counts[o], np.uint8)
        msg[:4].view(np.float32)[:] = norm
        msg[4:].view(np.int8)[:] = q[offsets[o]:offsets[o] + counts[o]]
        sends.append(msg)
    got = _direct_reduce_scatter(comm, sends, 4 + counts[rank], ctr)
    acc = np.zeros(counts[rank], accumulator_dtype(out.dtype))
    for msg in got:                                    # rank order
        scale = acc.dtype.type(msg[:4].view(np.float32)[0] / codec.levels)
        acc += msg[4:].view(np.int8).astype(acc.dtype) * scale
    blocks = [np.empty(4 + counts[s], np.uint8) for s in range(p)]
    snorm, sq = codec.quantize(acc)
    blocks[rank][:4].view(np.float32)[:] = snorm
    blocks[rank][4:].view(np.int8)[:] = sq
    lengths = [4 + counts[s] for s in range(p)]
    _ring_allgather_blocks(comm, blocks, lengths, ctr)
    for s in range(p):
        scale = out.dtype.type(blocks[s][:4].view(np.float32)[0] / codec.levels)
        out[offsets[s]:offsets[s] + counts[s]] = blocks[s][4:].view(np.int8).astype(out.dtype) * scale
    return out
