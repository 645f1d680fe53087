"""Collective debug mode (mpidml.comm.debug) in one launch: every checked entry point gives
the same bits with the check on as off and is checked exactly once (nested calls too);
each kind of mismatch raises the same CollectiveMismatch on every rank, fast, and the
communicator stays usable afterwards. Run with MPIDML_DEBUG_COLLECTIVES=1 (the env switch
is part of what is tested). Rank 0 prints one JSON line."""

import hashlib
import json
import sys
import time

import numpy as np
from mpi4py import MPI

from mpidml.comm import debug, select, topology
from mpidml.comm.bcast import chain_bcast, tree_bcast
from mpidml.comm.codecs import allgather_sum, make_codec
from mpidml.comm.gossip import neighbor_exchange, shift_exchange
from mpidml.comm.nonblocking import iallreduce
from mpidml.comm.rd import rd_allreduce
from mpidml.comm.ring import ring_allgather, ring_allreduce, ring_reduce_scatter
from mpidml.runtime.errors import CollectiveError

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
env_enabled = debug.enabled()
results = []


def data(n, dtype, seed):
    return np.random.default_rng([seed, rank, n]).standard_normal(n).astype(dtype)


def digest(x):
    if isinstance(x, (list, tuple)):
        return hashlib.sha256(b"".join(a.tobytes() for a in x)).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def total_checks():
    return debug.total()


# ---- matching calls: same bits with and without the check, exactly one check each
graph = topology.build("ring", p)
nbrs = graph[rank]
codec = make_codec("topk", 2000, ratio=0.05)


def neighbor_case():
    x = data(500, np.float64, 7)
    recv = [np.empty(500) for _ in nbrs]
    neighbor_exchange(comm, x, nbrs, recv)
    return recv


def shift_case():
    x, recv = data(333, np.float32, 8), np.empty(333, np.float32)
    shift_exchange(comm, x, recv, 1)
    return recv


def allgather_sum_case():
    out = np.empty(2000, np.float32)
    return allgather_sum(comm, make_codec("topk", 2000, ratio=0.05), data(2000, np.float32, 9), out)


def bcast_case(impl, n=1001):
    buf = data(n, np.float64, 10)
    return select.bcast(comm, buf, root=p - 1, impl=impl)


matching = {
    **{f"allreduce_{impl}_{n}": (lambda impl=impl, n=n: select.allreduce(comm, data(n, np.float32, 1), "avg", impl))
       for impl in ("auto", "ring", "rd", "shm", "hier", "native") for n in (1030, 100_003)},
    "allreduce_out": lambda: select.allreduce(comm, data(999, np.float64, 2), impl="ring", out=np.empty(999)),
    "ring_allreduce": lambda: ring_allreduce(comm, data(4097, np.float64, 3)),
    "ring_reduce_scatter": lambda: ring_reduce_scatter(comm, data(4097, np.float32, 4)).copy(),
    "ring_allgather": lambda: ring_allgather(comm, data(1000, np.int64, 5)),
    "rd_allreduce": lambda: rd_allreduce(comm, data(77, np.float64, 6), "sum"),
    **{f"bcast_{impl}": (lambda impl=impl: bcast_case(impl)) for impl in select.BCAST_IMPLS},
    "tree_bcast": lambda: tree_bcast(comm, data(64, np.float32, 11), 0),
    "chain_bcast": lambda: chain_bcast(comm, data(100_000, np.float32, 12), 0),
    "neighbor_exchange": neighbor_case,
    "shift_exchange": shift_case,
    "allgather_sum": allgather_sum_case,
    "iallreduce": lambda: iallreduce(comm, data(5000, np.float64, 13), impl="ring").wait(),
}


def run_matching(tag):
    for name, fn in matching.items():
        debug.disable()
        want = digest(fn())
        debug.enable()
        before = total_checks()
        got = digest(fn())
        checks = total_checks() - before
        ok = got == want and checks == (1 if p > 1 else 0)
        results.append({"case": f"{tag}:{name}", "kind": "match",
                        "ok": all(comm.allgather(ok)), "checks": checks})


# ---- mismatches: every rank raises the same message within seconds
last = p - 1


def mismatch(name, fn, expect, only=None):
    """``fn`` runs on every rank; ranks in ``only`` (default all) must raise."""
    debug.enable()
    t0 = time.monotonic()
    msg, kind = None, None
    try:
        fn()
    except CollectiveError as exc:
        msg, kind = str(exc), type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - reported as a failure of the case
        msg, kind = f"{type(exc).__name__}: {exc}", "other"
    seconds = time.monotonic() - t0
    msgs = comm.allgather((msg, kind))
    raisers = list(range(p)) if only is None else only
    m = [msgs[r][0] for r in raisers]
    ok = (all(msgs[r][1] == "CollectiveMismatch" for r in raisers) and len(set(m)) == 1
          and all(e in (m[0] or "") for e in expect))
    results.append({"case": name, "kind": "mismatch", "ok": ok, "message": m[0],
                    "seconds": max(comm.allgather(seconds))})


def count_case():
    ring_allreduce(comm, data(1031 if rank == last else 1030, np.float32, 20))


def dtype_case():
    ring_allreduce(comm, data(1030, np.float64 if rank == last else np.float32, 21))


def op_case():
    select.allreduce(comm, data(1030, np.float32, 22), "avg" if rank == 0 else "sum", "ring")


def other_collective_case():
    if rank == 0:
        ring_allreduce(comm, data(1030, np.float32, 23))
    else:
        select.bcast(comm, data(8, np.float64, 24), root=0)


def root_case():
    select.bcast(comm, data(8, np.float64, 25), root=0 if rank == 0 else last, impl="tree")


def impl_case():
    select.allreduce(comm, data(1030, np.float32, 26), impl="rd" if rank == last else "ring")


def neighbor_size_case():
    x = data(500, np.float64, 27)
    recv = [np.empty(499 if rank == last else 500) for _ in nbrs]
    neighbor_exchange(comm, x, nbrs, recv)


def neighbor_list_case():
    mine = [] if rank == last else nbrs
    neighbor_exchange(comm, data(10, np.float64, 28), mine, [np.empty(10) for _ in mine])


def shift_case_bad():
    shift_exchange(comm, data(10, np.float32, 29), np.empty(10, np.float32), 1 if rank == 0 else 0)


def unchecked_case():
    if rank == last:
        comm.allgather(None)   # e.g. fail_together's control allgather
    else:
        ring_allreduce(comm, data(1030, np.float32, 30))


def iallreduce_case():
    iallreduce(comm, data(2000 if rank == 0 else 2001, np.float32, 31), impl="ring").wait()


if "--uncaught" in sys.argv:   # as under the CLI: the abort hook prints once, exit status 1
    from mpidml.runtime.errors import install_abort_hook
    install_abort_hook()
    other_collective_case()

if p > 1:
    run_matching("before")
    mismatch("count", count_case, ["count differs", "ring_allreduce(count=1030, float32, op=sum)",
                                   f"rank {last} called ring_allreduce(count=1031", "debug_cases.py:"])
    mismatch("dtype", dtype_case, ["dtype differs", "count=1030, float64"])
    mismatch("op", op_case, ["op differs", "rank 0 called allreduce(count=1030, float32, op=avg, impl=ring)"])
    mismatch("other_collective", other_collective_case,
             ["name differs", "rank 0 called ring_allreduce(count=1030, float32, op=sum) at debug_cases.py:",
              "called bcast(count=8, float64, root=0, impl=native) at debug_cases.py:"])
    mismatch("root", root_case, ["root differs", "tree"])
    mismatch("impl", impl_case, ["impl differs", "impl=rd"])
    mismatch("neighbor_size", neighbor_size_case, ["count/dtype", "receives 499 x float64"])
    mismatch("neighbor_list", neighbor_list_case, ["neighbors", "which does not list"])
    mismatch("shift", shift_case_bad, ["shift", "rank 0 (shift 1) receives from rank"])
    mismatch("unchecked", unchecked_case, [f"rank {last} not in an mpidml collective"], only=list(range(p - 1)))
    debug.reset(comm)   # rank `last` never counted that call: renumber on every rank
    mismatch("iallreduce", iallreduce_case, ["count differs", "count=2001"])
    run_matching("after")

# the sequence numbers agree on all ranks at the end
seqs = comm.allgather(debug.sequence(comm))
if rank == 0:
    sys.stdout.write(json.dumps({"size": p, "env_enabled": env_enabled, "seqs_agree": len(set(seqs)) == 1,
                                 "results": results}) + "\n")
