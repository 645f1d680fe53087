"""Single-copy allreduce inside a node through an MPI shared-memory window.

The ranks of a node communicator (``Split_type(COMM_TYPE_SHARED)``, or an emulated
node) allocate one window with a slot of ``capacity`` elements per rank; MPICH lays
the slots out contiguously, so the window is one (p, capacity) table every rank can
read. A rank's slot can *be* its fusion buffer (``ShmAllreduce.buffer``): then no
copy-in is needed at all.

    phase 1 (reduce-scatter): rank r sums column segment r of all p slots straight
        from its peers' memory, in rank order, into its own slot  — reads n, writes n/p
    phase 2 (allgather): rank r copies every other segment s from the slot of the
        rank that owns it                                          — copies n(p−1)/p
    three node barriers (+ MPI_Win_sync) separate: inputs written | segments reduced |
        everyone has read (so no rank overwrites its slot while a peer still reads it)

Compared with a ring (2(p−1) messages, each a copy into a receive buffer and again
out of it), every byte is read once from where it lies. Each reduced segment is
computed by exactly one rank, so all ranks end with identical bits.

Byte counters: bytes read from peers' slots are counted as received by the reader
and as sent by the owner (both phases are symmetric, so each rank's sent equals
its received).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from . import debug as _debug
from .common import ByteCounter, counters_or_default, scale_mean, segment_counts

__all__ = ["ShmAllreduce"]

_ACC_BLOCK = 16384  # elements per block of the p > 2 reduction (accumulator stays in L1/L2)


def sum_rows_into(table: np.ndarray, a: int, b: int, out: np.ndarray, acc: np.ndarray) -> None:
    """out[a:b] = Σ_i table[i, a:b], added in rank order 0..p-1 (so the bits do not
    depend on which rank computes it). ``out`` may be a row of ``table``: for p > 2
    each block is summed into the scratch ``acc`` before it is stored. (numpy's
    SIMD add is ~10x faster here than a numba loop, which cannot prove no aliasing.)"""
    p = table.shape[0]
    if p == 1:
        out[a:b] = table[0, a:b]
    elif p == 2:
        np.add(table[0, a:b], table[1, a:b], out=out[a:b])   # same-index aliasing is safe
    else:
        for start in range(a, b, acc.size):
            stop = min(b, start + acc.size)
            blk = acc[:stop - start]
            np.add(table[0, start:stop], table[1, start:stop], out=blk)
            for i in range(2, p):
                np.add(blk, table[i, start:stop], out=blk)
            out[start:stop] = blk


class ShmAllreduce:
    """Collective over ``node_comm`` (whose ranks share memory): an allreduce engine
    for buffers of up to ``capacity`` elements of ``dtype``. Free it with ``free()``."""

    def __init__(self, node_comm, capacity: int, dtype):
        self.comm = node_comm
        self.dtype = np.dtype(dtype)
        self.capacity = max(int(capacity), 1)
        p, rank = node_comm.Get_size(), node_comm.Get_rank()
        self.p, self.rank = p, rank
        item = self.dtype.itemsize
        self.win: MPI.Win | None = MPI.Win.Allocate_shared(self.capacity * item, item, comm=node_comm)
        slots = [self.win.Shared_query(j)[0] for j in range(p)]
        addrs = [MPI.Get_address(s) for s in slots]
        stride = self.capacity * item
        if any(addrs[j] != addrs[0] + j * stride for j in range(p)):
            self._results: ShmAllreduce | None = None
            self.free()
            raise RuntimeError("shared window slots are not contiguous; cannot use the shm allreduce")
        table_mem = MPI.buffer.fromaddress(addrs[0], p * stride)
        self.table = np.frombuffer(table_mem, dtype=self.dtype).reshape(p, self.capacity)  # type: ignore[call-overload]
        self.slot = self.table[rank]
        self._acc = np.empty(_ACC_BLOCK, dtype=self.dtype)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        self._results = None  # shared result area, made on first need

    def buffer(self, n: int) -> np.ndarray:
        """This rank's first ``n`` slot elements: write data here to skip the copy-in."""
        if n > self.capacity:
            raise ValueError(f"{n} elements exceed the window capacity {self.capacity}")
        return self.slot[:n]

    def fence(self) -> None:
        """Node barrier with memory synchronisation of the window: writes before it are
        visible to every rank of the node after it."""
        win = self.win
        assert win is not None, "fence() on a freed shared window"
        win.Sync()
        self.comm.Barrier()
        win.Sync()

    def reduce_scatter(self, n: int, op: str = "sum", into: np.ndarray | None = None,
                       counters: ByteCounter | None = None):
        """Slots hold the inputs (first ``n`` elements); afterwards segment r of ``into``
        (default: rank r's own slot) holds the reduced segment r. Returns the layout."""
        counts, offsets = segment_counts(n, self.p)
        a = offsets[self.rank]
        b = a + counts[self.rank]
        into = self.slot if into is None else into
        self.fence()
        sum_rows_into(self.table, a, b, into, self._acc)
        if op == "avg":
            scale_mean(into[a:b], self.p)
        read = (self.p - 1) * (b - a) * self.dtype.itemsize
        counters_or_default(counters).add(sent=read, received=read)
        self.fence()
        return counts, offsets

    def gather_into(self, out: np.ndarray, counts, offsets, skip_own: bool, table=None,
                    counters: ByteCounter | None = None) -> None:
        """Copy every reduced segment from its owner's row of ``table`` (default: the
        slots) into ``out``; counts bytes read from peers as received (owners count
        them as sent)."""
        table = self.table if table is None else table
        counters = counters_or_default(counters)
        for s in range(self.p):
            if skip_own and s == self.rank:
                continue
            a, c = offsets[s], counts[s]
            out[a:a + c] = table[s, a:a + c]
            if s != self.rank:
                counters.add(received=c * self.dtype.itemsize)
        self.fence()

    def allreduce(self, buf: np.ndarray, op: str = "sum", out: np.ndarray | None = None, *,
                  counters: ByteCounter | None = None, debug: _debug.DebugMode | None = None) -> np.ndarray:
        """Allreduce of ``buf`` into ``out`` (default: in place into ``buf``). Returns ``out``.

        * ``buf`` is this rank's slot (``buffer``), in place: reduce, then copy the
          other p−1 segments — the least memory traffic there is (single copy).
        * ``buf`` is the slot, ``out`` elsewhere: segments are reduced into a second
          shared area, so the input stays intact; then gathered into ``out``.
        * ``buf`` is ordinary memory: copied into the slot first (one extra copy).
        """
        dbg = _debug.mode(debug)
        if dbg.on and _debug.outermost():
            with dbg.checked(self.comm, "shm_allreduce", buf, op=op):
                return self.allreduce(buf, op, out, counters=counters, debug=dbg)
        counters = counters_or_default(counters)
        n = buf.size
        out = buf if out is None else out
        in_window = n <= self.capacity and buf.ctypes.data == self.slot.ctypes.data
        if in_window and out is not buf:
            results = self._result_area()
            counts, offsets = self.reduce_scatter(n, op, into=results.slot, counters=counters)
            self.gather_into(out, counts, offsets, skip_own=False, table=results.table, counters=counters)
        else:
            if not in_window:
                self.buffer(n)[:] = buf
            counts, offsets = self.reduce_scatter(n, op, counters=counters)
            self.gather_into(out, counts, offsets, skip_own=in_window, counters=counters)
        counters.add(sent=(self.p - 1) * counts[self.rank] * self.dtype.itemsize)  # peers read mine
        return out

    def _result_area(self) -> ShmAllreduce:
        # Collective on first use; every rank takes the same branch for the same call.
        if self._results is None:
            self._results = ShmAllreduce(self.comm, self.capacity, self.dtype)
        return self._results

    def free(self) -> None:
        if self._results is not None:
            self._results.free()
            self._results = None
        if self.win is not None and self.win != MPI.WIN_NULL:
            try:
                self.win.Unlock_all()
            except MPI.Exception:
                pass
            self.table = self.slot = None
            self.win.Free()
        self.win = None
