"""One allreduce entry point that picks the algorithm by message size and layout.

    impl="auto":  p == 1                    → nothing to do
                  bytes <= small_bytes      → native MPI (latency-bound; MPICH is best there)
                  all ranks on one node     → shm   (single-copy shared-memory window)
                  several nodes             → hier  (shm in the node + ring across leaders)
    impl="ring" | "rd" | "shm" | "hier" | "native" forces one algorithm.

The threshold comes from ``bench`` measurements on these machines (see bench/results)
and is overridable with ``MPIDML_SMALL_BYTES`` or ``set_small_bytes``. Per-communicator
state (node layout, shared windows grown on demand) is created collectively on first
use and released with ``release(comm)`` or at exit.
"""

from __future__ import annotations

import atexit
import os

import numpy as np
from mpi4py import MPI

from . import debug as _debug
from .hierarchical import NodeLayout, hierarchical_allreduce, split_nodes
from .rd import rd_allreduce
from .ring import _check_buffer, _scale_mean, counters, ring_allreduce
from .shm import ShmAllreduce

__all__ = ["IMPLS", "BCAST_IMPLS", "bcast", "allreduce", "choose", "native_allreduce", "release", "set_small_bytes", "shm_buffer",
           "small_bytes"]

IMPLS = ("auto", "ring", "rd", "shm", "hier", "native")
# Crossover measured at p = 2 on the 2-core machines (bench/results/allreduce-p2-*.txt):
# native wins up to ~32 KiB, ties at 64 KiB, shm wins from 256 KiB on.
_small_bytes = int(os.environ.get("MPIDML_SMALL_BYTES", 65536))


def small_bytes() -> int:
    return _small_bytes


def set_small_bytes(nbytes: int) -> None:
    """Messages up to ``nbytes`` go to native MPI under ``impl="auto"``."""
    global _small_bytes
    _small_bytes = int(nbytes)


class _Context:
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


_contexts: dict[int, _Context] = {}


def _context(comm) -> _Context:
    key = comm.py2f()
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = _Context(comm)
    return ctx


def release(comm) -> None:
    """Collective: free the windows and communicators cached for ``comm``."""
    ctx = _contexts.pop(comm.py2f(), None)
    if ctx is not None:
        ctx.free()


@atexit.register
def _release_all() -> None:
    if MPI.Is_initialized() and not MPI.Is_finalized():
        for key in list(_contexts):
            _contexts.pop(key).free()


def choose(comm, nbytes: int) -> str:
    """The algorithm ``impl="auto"`` uses for a message of ``nbytes`` on ``comm``."""
    if comm.Get_size() == 1:
        return "none"
    if nbytes <= _small_bytes:
        return "native"
    return "shm" if _context(comm).layout.num_nodes == 1 else "hier"


def native_allreduce(comm, buf: np.ndarray, op: str = "sum", out: np.ndarray | None = None) -> np.ndarray:
    """MPI's own ``Allreduce`` (in place, or into ``out``). Byte counters get the
    bandwidth-optimal volume 2(p−1)/p·n each way (what MPI really moved is not
    observable from here)."""
    if _debug.on and _debug.outermost():
        with _debug.checked(comm, "native_allreduce", buf, op=op):
            return native_allreduce(comm, buf, op, out)
    p = comm.Get_size()
    if out is None or out is buf:
        out = buf
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    else:
        comm.Allreduce(buf, out, op=MPI.SUM)
    if op == "avg":
        _scale_mean(out, p)
    moved = 2 * (p - 1) * buf.nbytes // p
    counters.add(sent=moved)
    counters.add(received=moved)
    return out


def allreduce(comm, buf: np.ndarray, op: str = "sum", impl: str = "auto",
              out: np.ndarray | None = None) -> np.ndarray:
    """Allreduce of a 1-D buffer with the chosen (or forced) algorithm.

    In place (``out=None``): ``buf`` is overwritten and returned. Out of place: ``buf``
    is left untouched and the result is written to ``out`` (same size and dtype),
    which is returned. Every rank passes the same length, dtype, ``op`` and ``impl``;
    every rank gets back the same bits.
    """
    if _debug.on and _debug.outermost():
        with _debug.checked(comm, "allreduce", buf, op=op, impl=impl):
            return allreduce(comm, buf, op, impl, out)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if op not in ("sum", "avg"):
        raise ValueError(f"op must be 'sum' or 'avg', got {op!r}")
    _check_buffer(buf, reduce=True)
    if out is None:
        out = buf
    elif out is not buf:
        _check_buffer(out, reduce=True)
        if out.size != buf.size or out.dtype != buf.dtype:
            raise ValueError(f"out has {out.size} x {out.dtype}, buf has {buf.size} x {buf.dtype}")
    if impl == "auto":
        impl = choose(comm, buf.nbytes)
    if impl == "native":
        return native_allreduce(comm, buf, op, out=out)
    if impl in ("shm", "hier"):
        ctx = _context(comm)
        engine = ctx.engine(buf.dtype, buf.size)
        if impl == "shm":
            if ctx.layout.num_nodes != 1:
                raise ValueError("impl='shm' needs all ranks on one node; use 'hier' across nodes")
            return engine.allreduce(buf, op, out=out)   # copies from buf, gathers into out
        return hierarchical_allreduce(ctx.layout, engine, buf, op, out=out)
    if out is not buf:
        out[:] = buf   # the remaining algorithms reduce in place on the output buffer
    if impl == "none" or out.size == 0:
        return out
    if impl == "ring":
        return ring_allreduce(comm, out, op)
    return rd_allreduce(comm, out, op)


BCAST_IMPLS = ("native", "tree", "chain", "shm")


def bcast(comm, buf: np.ndarray, root: int = 0, impl: str = "native") -> np.ndarray:
    """Broadcast ``buf`` from ``root`` with one of ``BCAST_IMPLS`` (in place)."""
    if _debug.on and _debug.outermost():
        with _debug.checked(comm, "bcast", buf, root=root, impl=impl):
            return bcast(comm, buf, root, impl)
    from .bcast import chain_bcast, shm_bcast, tree_bcast

    if impl == "native":
        comm.Bcast(buf, root=root)
        if comm.Get_rank() == root:
            counters.add(sent=(comm.Get_size() - 1) * buf.nbytes)
        else:
            counters.add(received=buf.nbytes)
        return buf
    if impl == "tree":
        return tree_bcast(comm, buf, root)
    if impl == "chain":
        return chain_bcast(comm, buf, root)
    if impl == "shm":
        ctx = _context(comm)
        if ctx.layout.num_nodes != 1:
            raise ValueError("impl='shm' needs all ranks on one node")
        return shm_bcast(ctx.engine(buf.dtype, max(buf.size, 1)), buf, root)
    raise ValueError(f"bcast impl must be one of {BCAST_IMPLS}, got {impl!r}")


def shm_buffer(comm, n: int, dtype) -> np.ndarray:
    """A fusion buffer of ``n`` elements that lives in the node's shared window, so
    ``allreduce(comm, buf, impl="shm"|"auto")`` needs no copy-in. Collective."""
    return _context(comm).engine(np.dtype(dtype), n).buffer(n)
