"""Node-aware communicators and the hierarchical allreduce.

``split_nodes(comm)`` groups ranks that share memory (``COMM_TYPE_SHARED``). For
tests and demos on one machine, ``MPIDML_FAKE_NODES="3,2"`` (or ``fake_nodes=``)
splits ``comm`` into consecutive emulated nodes of those sizes instead.

Hierarchical allreduce, n elements, L nodes:
    1. shm reduce-scatter inside each node (single copy, see shm.py)
    2. each node leader (local rank 0) collects the node's sum from its peers' slots
    3. ring allreduce of the full vector across the L leaders
    4. every other rank of the node copies the result from its leader's slot
Only leaders touch the inter-node network; ranks of a node never send each other
messages. Every rank ends with the leaders' ring result, hence identical bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from . import debug as _debug
from .common import ByteCounter, counters_or_default, scale_mean
from .ring import ring_allreduce

__all__ = ["NodeLayout", "split_nodes", "parse_fake_nodes", "hierarchical_allreduce"]


def parse_fake_nodes(spec: str | None, size: int) -> list[int] | None:
    """``"3,2"`` → [3, 2]; checks that the sizes are positive and sum to ``size``."""
    if not spec:
        return None
    try:
        sizes = [int(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"MPIDML_FAKE_NODES must be comma-separated node sizes, got {spec!r}") from None
    if any(s < 1 for s in sizes) or sum(sizes) != size:
        raise ValueError(f"MPIDML_FAKE_NODES={spec!r}: sizes must be >= 1 and sum to the "
                         f"{size} ranks of the communicator")
    return sizes


@dataclass
class NodeLayout:
    node: MPI.Intracomm      # communicator of this rank's node
    leaders: MPI.Intracomm   # communicator of node leaders (MPI.COMM_NULL on non-leaders)
    node_index: int
    num_nodes: int
    world_size: int
    parent: object = None  # the communicator that was split (not owned; for debug checks)

    @property
    def is_leader(self) -> bool:
        return self.node.Get_rank() == 0

    def free(self) -> None:
        for c in (self.node, self.leaders):
            if c != MPI.COMM_NULL:
                c.Free()


def split_nodes(comm, fake_nodes: str | None = None) -> NodeLayout:
    """Collective: this rank's node communicator and the leaders' communicator."""
    rank = comm.Get_rank()
    sizes = parse_fake_nodes(fake_nodes if fake_nodes is not None
                             else os.environ.get("MPIDML_FAKE_NODES"), comm.Get_size())
    if sizes:
        bounds = np.cumsum(sizes)
        color = int(np.searchsorted(bounds, rank, side="right"))
        node = comm.Split(color, key=rank)
    else:
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    is_leader = node.Get_rank() == 0
    leaders = comm.Split(0 if is_leader else MPI.UNDEFINED, key=rank)
    # node index = rank among leaders, told to the whole node
    info = np.array([leaders.Get_rank() if is_leader else 0, leaders.Get_size() if is_leader else 0])
    node.Bcast(info, root=0)
    return NodeLayout(node=node, leaders=leaders, node_index=int(info[0]), num_nodes=int(info[1]),
                      world_size=comm.Get_size(), parent=comm)


def hierarchical_allreduce(layout: NodeLayout, shm, buf: np.ndarray, op: str = "sum",
                           out: np.ndarray | None = None, *, counters: ByteCounter | None = None,
                           debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Allreduce over all nodes into ``out`` (default: in place); ``shm`` is the node's
    ``ShmAllreduce``. If ``buf`` is this rank's window slot and ``out`` is elsewhere,
    the slot is left intact (the shared result area is the scratch)."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(layout.node if layout.parent is None else layout.parent, "hierarchical_allreduce", buf, op=op):
            return hierarchical_allreduce(layout, shm, buf, op, out, counters=counters, debug=dbg)
    counters = counters_or_default(counters)
    n = buf.size
    out = buf if out is None else out
    slot = shm.buffer(n)
    in_window = buf.ctypes.data == slot.ctypes.data
    area = shm._result_area() if (in_window and out is not buf) else shm
    if not in_window:
        slot[:] = buf
    counts, offsets = shm.reduce_scatter(n, "sum", into=area.slot, counters=counters)
    node_sum = area.slot[:n]
    if layout.is_leader:
        shm.gather_into(node_sum, counts, offsets, skip_own=True, table=area.table, counters=counters)
        ring_allreduce(layout.leaders, node_sum, op="sum", counters=counters, debug=dbg)
        if op == "avg":
            scale_mean(node_sum, layout.world_size)
    else:
        counters.add(sent=counts[shm.rank] * buf.itemsize)  # the leader reads my segment
        shm.fence()  # pairs with the leader's gather fence
    shm.fence()      # the leader's area holds the global result
    if not layout.is_leader:
        out[:] = area.table[0, :n]
        counters.add(received=out.nbytes)
    elif out.ctypes.data != node_sum.ctypes.data:
        out[:] = node_sum
    shm.fence()      # nobody rewrites the leader's area while others read it
    return out
