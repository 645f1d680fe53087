"""The allreduce policy, MPI's native allreduce, and the per-communicator state they need.

    impl="auto":  p == 1                    → nothing to do
                  bytes <= small_bytes      → native MPI (latency-bound; MPICH is best there)
                  all ranks on one node     → shm   (single-copy shared-memory window)
                  several nodes             → hier  (shm in the node + ring across leaders)
    impl="ring" | "rd" | "shm" | "hier" | "native" forces one algorithm.

``policy`` is a pure function of what every rank knows identically (message bytes,
communicator size, node count, threshold), so all ranks pick the same algorithm for
the same call. The threshold comes from ``bench`` measurements on these machines (see
bench/results) and is overridable with ``MPIDML_SMALL_BYTES``.

The algorithm runs in ``collectives.Collectives`` (one per communicator: its counters,
debug mode, threshold and ``CommContext`` — the node layout and shared windows, created
collectively on first use). The module-level ``allreduce(comm, buf)`` / ``bcast`` /
``choose`` / ``shm_buffer`` / ``release`` here are the public API of earlier versions:
they use the default ``Collectives`` of ``comm`` (``collectives.default_for``), which
counts into ``common.DEFAULT_COUNTERS`` and checks with ``debug.default``.
"""

from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI

from . import debug as _debug
from .common import ALLREDUCE_IMPLS, BCAST_IMPLS, ByteCounter, counters_or_default, scale_mean
from .hierarchical import NodeLayout, split_nodes
from .shm import ShmAllreduce

__all__ = ["IMPLS", "BCAST_IMPLS", "DEFAULT_SMALL_BYTES", "CommContext", "policy", "bcast", "allreduce", "choose",
           "native_allreduce", "release", "set_small_bytes", "shm_buffer", "small_bytes"]

IMPLS = ALLREDUCE_IMPLS        # (comm/common.py: the one list)
# Crossover measured at p = 2 on the 2-core machines with the bench before issue 22's fixes
# (bench/results/allreduce-p2-{inplace,outofplace}.txt, which do not reproduce): native won up to
# ~32 KiB, tied at 64 KiB, shm won from 256 KiB on. Not yet re-tuned from the honest bench
# (bench/results/collectives-honest.md).
DEFAULT_SMALL_BYTES = 65536


def env_small_bytes() -> int:
    return int(os.environ.get("MPIDML_SMALL_BYTES", DEFAULT_SMALL_BYTES))


def policy(nbytes: int, size: int, num_nodes: int | None, small_bytes: int) -> str:
    """The algorithm ``impl="auto"`` runs; ``num_nodes`` is only needed (may be None)
    when ``nbytes > small_bytes``.

    Every choice gives bit-identical results on every rank: ring, rd, shm and hier by
    construction (each reduced element is computed once, or by commutative pairs), and
    native MPI_Allreduce as measured on the MPICH these machines run (5.0.2, ch4; p = 3
    and 4, float32/float64, 1 element to 1 Mi elements: tests/test_collectives_mpi.py
    checks it at p = 1..4 across the threshold). An MPI whose allreduce is not
    bitwise-reproducible across ranks (e.g. a k-nomial algorithm reducing in rank-
    dependent order) would break that: run with ``MPIDML_SMALL_BYTES=0`` (or force
    ``MPIDML_ALLREDUCE_IMPL=rd``) there."""
    if size == 1:
        return "none"
    if nbytes <= small_bytes:
        return "native"
    return "shm" if num_nodes == 1 else "hier"


class CommContext:
    """Collective per-communicator state: node layout and one shm engine per dtype."""

    def __init__(self, comm):
        self.layout: NodeLayout = split_nodes(comm)
        self.engines: dict[str, ShmAllreduce] = {}

    def engine(self, dtype: np.dtype, n: int) -> ShmAllreduce:
        # Every rank asks for the same (dtype, n), so growth decisions agree on all ranks.
        eng = self.engines.get(dtype.str)
        if eng is None or eng.capacity < n:
            capacity = max(n, 2 * eng.capacity) if eng else max(n, 1024)
            if eng is not None:
                eng.free()
            eng = ShmAllreduce(self.layout.node, capacity, dtype)
            self.engines[dtype.str] = eng
        return eng

    def free(self) -> None:
        for eng in self.engines.values():
            eng.free()
        self.engines.clear()
        self.layout.free()

    def free_at_exit(self) -> None:
        if MPI.Is_initialized() and not MPI.Is_finalized():
            self.free()


def native_allreduce(comm, buf: np.ndarray, op: str = "sum", out: np.ndarray | None = None, *,
                     counters: ByteCounter | None = None, debug: _debug.DebugMode | None = None) -> np.ndarray:
    """MPI's own ``Allreduce`` (in place, or into ``out``). Byte counters get the
    bandwidth-optimal volume 2(p−1)/p·n each way (what MPI really moved is not
    observable from here)."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "native_allreduce", buf, op=op):
            return native_allreduce(comm, buf, op, out, counters=counters, debug=dbg)
    p = comm.Get_size()
    if out is None or out is buf:
        out = buf
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    else:
        comm.Allreduce(buf, out, op=MPI.SUM)
    if op == "avg":
        scale_mean(out, p)
    moved = 2 * (p - 1) * buf.nbytes // p
    counters_or_default(counters).add(sent=moved, received=moved)
    return out


# ---- the module-level API: the default Collectives of each communicator ---------------

def _default(comm):
    from .collectives import default_for

    return default_for(comm)


def small_bytes() -> int:
    """The threshold of the default instances (``MPIDML_SMALL_BYTES``, or ``set_small_bytes``)."""
    from . import collectives

    return collectives.default_small_bytes()


def set_small_bytes(nbytes: int) -> None:
    """Messages up to ``nbytes`` go to native MPI under ``impl="auto"`` in the module-level
    functions (a ``Collectives`` takes ``small_bytes=`` instead)."""
    from . import collectives

    collectives.set_default_small_bytes(nbytes)


def choose(comm, nbytes: int) -> str:
    """The algorithm ``impl="auto"`` uses for a message of ``nbytes`` on ``comm``."""
    return _default(comm).choose(nbytes)


def allreduce(comm, buf: np.ndarray, op: str = "sum", impl: str = "auto",
              out: np.ndarray | None = None) -> np.ndarray:
    """Allreduce of a 1-D buffer with the chosen (or forced) algorithm: in place
    (``out=None``) or into ``out``; see ``Collectives.allreduce``."""
    return _default(comm).allreduce(buf, op, impl=impl, out=out)


def bcast(comm, buf: np.ndarray, root: int = 0, impl: str = "native") -> np.ndarray:
    """Broadcast ``buf`` from ``root`` with one of ``BCAST_IMPLS`` (in place)."""
    return _default(comm).bcast(buf, root, impl=impl)


def shm_buffer(comm, n: int, dtype) -> np.ndarray:
    """A fusion buffer of ``n`` elements that lives in the node's shared window, so
    ``allreduce(comm, buf, impl="shm"|"auto")`` needs no copy-in. Collective."""
    return _default(comm).shm_buffer(n, dtype)


def release(comm) -> None:
    """Collective: free the windows and communicators cached for ``comm``'s default instance."""
    from .collectives import release_default

    release_default(comm)
