"""Probe a run across ``python -m mpidml.cluster`` nodes; rank 0 prints one JSON line.

``layout``: every rank's hostname, its ``COMM_TYPE_SHARED`` split size and the node count
mpidml's ``split_nodes`` sees. ``sendrecv NBYTES REPS``: ranks 0 and 1 exchange NBYTES both
ways with ``Sendrecv`` REPS times (others wait); the fastest exchange and whether the bytes
arrived intact.
"""

import json
import socket
import sys
import time

import numpy as np
from mpi4py import MPI

from mpidml.comm.hierarchical import split_nodes

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
mode = sys.argv[1]
if mode == "layout":
    shared = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    layout = split_nodes(comm)
    mine = {"rank": rank, "host": socket.gethostname(), "shared_size": shared.Get_size(),
            "num_nodes": layout.num_nodes, "node_index": layout.node_index}
    rows = comm.gather(mine, root=0)
    if rank == 0:
        print(json.dumps({"ranks": rows}), flush=True)
elif mode == "sendrecv":
    nbytes, reps = int(sys.argv[2]), int(sys.argv[3])
    times, ok = [], True
    if rank < 2:
        peer = 1 - rank
        send = np.random.default_rng(rank).integers(0, 256, nbytes, dtype=np.uint8)
        expect = np.random.default_rng(peer).integers(0, 256, nbytes, dtype=np.uint8)
        recv = np.empty_like(send)
    for _ in range(reps):
        comm.Barrier()
        if rank < 2:
            recv[:] = 0
            t0 = time.perf_counter()
            comm.Sendrecv(send, peer, recvbuf=recv, source=peer)
            times.append(time.perf_counter() - t0)
            ok = ok and bool(np.array_equal(recv, expect))
    both = comm.gather({"host": socket.gethostname(), "times": times, "ok": ok}, root=0)
    if rank == 0:
        print(json.dumps({"pair": both[:2], "best": max(min(b["times"]) for b in both[:2]),
                          "ok": all(b["ok"] for b in both[:2])}), flush=True)
else:
    raise SystemExit(f"cluster_probe.py: unknown mode {mode!r}")
