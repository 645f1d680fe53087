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

from ..kernels.reduce import sum_rows_into
from .ring import _scale_mean, counters, segment_counts

__all__ = ["ShmAllreduce"]

_ACC_BLOCK = 4096  # elements summed per block (stays in L1)


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
        self.win = MPI.Win.Allocate_shared(self.capacity * item, item, comm=node_comm)
        slots = [self.win.Shared_query(j)[0] for j in range(p)]
        addrs = [MPI.Get_address(s) for s in slots]
        stride = self.capacity * item
        if any(addrs[j] != addrs[0] + j * stride for j in range(p)):
            self.free()
            raise RuntimeError("shared window slots are not contiguous; cannot use the shm allreduce")
        table_mem = MPI.buffer.fromaddress(addrs[0], p * stride)
        self.table = np.frombuffer(table_mem, dtype=self.dtype).reshape(p, self.capacity)
        self.slot = self.table[rank]
        self._acc = np.empty(_ACC_BLOCK, dtype=self.dtype)
        self.win.Lock_all(MPI.MODE_NOCHECK)

    def buffer(self, n: int) -> np.ndarray:
        """This rank's first ``n`` slot elements: write data here to skip the copy-in."""
        if n > self.capacity:
            raise ValueError(f"{n} elements exceed the window capacity {self.capacity}")
        return self.slot[:n]

    def _fence(self) -> None:
        self.win.Sync()
        self.comm.Barrier()
        self.win.Sync()

    def reduce_scatter(self, n: int, op: str = "sum") -> tuple[list[int], list[int]]:
        """Slots hold the inputs (first ``n`` elements); afterwards rank r's slot holds the
        reduced segment r. Returns the segment layout."""
        counts, offsets = segment_counts(n, self.p)
        a = offsets[self.rank]
        b = a + counts[self.rank]
        self._fence()
        sum_rows_into(self.table, a, b, self.slot, self._acc)
        if op == "avg":
            _scale_mean(self.slot[a:b], self.p)
        read = (self.p - 1) * (b - a) * self.dtype.itemsize
        counters.received += read
        counters.sent += read
        self._fence()
        return counts, offsets

    def gather_into(self, out: np.ndarray, counts, offsets, skip_own: bool) -> None:
        """Copy every reduced segment from its owner's slot into ``out`` (counts the
        bytes read from peers as received; the owners count them as sent)."""
        for s in range(self.p):
            if skip_own and s == self.rank:
                continue
            a, c = offsets[s], counts[s]
            out[a:a + c] = self.table[s, a:a + c]
            if s != self.rank:
                counters.received += c * self.dtype.itemsize
        self._fence()

    def allreduce(self, buf: np.ndarray, op: str = "sum", out: np.ndarray | None = None) -> np.ndarray:
        """Allreduce of ``buf`` into ``out`` (default: in place into ``buf``). If ``buf``
        is this rank's window slot (see ``buffer``) no copy-in is made. Returns ``out``."""
        n = buf.size
        out = buf if out is None else out
        in_window = n <= self.capacity and buf.ctypes.data == self.slot.ctypes.data
        if not in_window:
            self.buffer(n)[:] = buf
        counts, offsets = self.reduce_scatter(n, op)
        self.gather_into(out, counts, offsets, skip_own=in_window and out is buf)
        counters.sent += (self.p - 1) * counts[self.rank] * self.dtype.itemsize  # peers read mine
        return out

    def free(self) -> None:
        if self.win is not None and self.win != MPI.WIN_NULL:
            try:
                self.win.Unlock_all()
            except MPI.Exception:
                pass
            self.table = self.slot = None
            self.win.Free()
        self.win = None
