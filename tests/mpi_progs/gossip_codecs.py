"""Gossip rounds vs the central W @ X, shift exchanges, and compressed allgather sums
with exact wire-byte counts, in one launch. Rank 0 prints JSON."""

import json
import sys

import numpy as np
from mpi4py import MPI

from mpidml.comm import topology as topo
from mpidml.comm.codecs import allgather_sum, make_codec
from mpidml.comm.gossip import gossip_round, shift_exchange
from mpidml.comm.ring import counters

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
results = []


def record(name, ok):
    results.append({"case": name, "ok": all(comm.allgather(bool(ok)))})


n = 1001
X = np.random.default_rng(5).standard_normal((p, n))   # row r = rank r's vector (all ranks know all)
names = ["ring", "exponential", "torus"] + (["hypercube"] if p & (p - 1) == 0 else [])
for name in names:
    g = topo.build(name, p)
    W = topo.metropolis_hastings(g)
    x = X[rank].copy()
    scratch = [np.empty(n) for _ in g[rank]]
    ref = X.copy()
    for _ in range(3):
        gossip_round(comm, x, W, g[rank], scratch)
        ref = W @ ref
    record(f"gossip_{name}", np.allclose(x, ref[rank], atol=1e-12))

for t in range(3):
    s = topo.one_peer_exponential(p, t)
    recv = np.empty(n)
    shift_exchange(comm, X[rank], recv, s)
    record(f"shift_{t}", np.array_equal(recv, X[(rank - s) % p]))

for name in ("fp16", "topk", "qsgd"):
    codec = make_codec(name, n, np.float64, ratio=0.05, levels=8, seed=rank)
    out = np.empty(n)
    before = counters.sent, counters.received
    allgather_sum(comm, codec, X[rank], out)
    sent = counters.sent - before[0]
    # payload bytes of this codec, times (p - 1) ring steps
    payload = sum(np.prod(shape) * dt.itemsize for shape, dt in codec.payload_shapes(n).values())
    ok = sent == (p - 1) * payload and counters.received - before[1] == (p - 1) * payload
    digests = comm.allgather(out.tobytes())
    ok = ok and all(d == digests[0] for d in digests)
    if name == "fp16":
        ok = ok and np.allclose(out, X.sum(0), atol=5e-3 * p)
    if name == "topk":
        ok = ok and np.count_nonzero(out) <= p * codec.k
    record(f"codec_{name}", ok)

from mpidml.comm import select  # noqa: E402

for impl in select.BCAST_IMPLS:
    for root in sorted({0, p - 1}):
        for length in (0, 1, 1000, 300_001):
            data = np.random.default_rng([length, root]).standard_normal(length)
            buf = data.copy() if rank == root else np.zeros(length)
            select.bcast(comm, buf, root=root, impl=impl)
            record(f"bcast_{impl}_{root}_{length}", np.array_equal(buf, data))
select.release(comm)

if rank == 0:
    sys.stdout.write(json.dumps({"size": p, "results": results}) + "\n")
