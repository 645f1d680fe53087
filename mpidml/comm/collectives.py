"""``Collectives``: one object per communicator, the only thing algorithms talk to.

    coll = Collectives(comm, debug=False)          # one per run (train.py), or per test
    coll.allreduce(buf)                            # measured "auto" policy (select.policy)
    coll.allreduce(buf, "avg", impl="ring")        # or one algorithm, forced
    coll.bcast(buf, root=0)
    coll.allgather_sum(codec, g, out)              # compressed payloads gathered (comm/codecs.py)
    coll.reduce_sum(codec, g, out, tail=ctrl)      # ... or reduced (comm/compressed.py; sync uses this)
    got = coll.control_exchange(ControlValues(loss, count, stop, nan))
    coll.neighbor_exchange(...), coll.shift_exchange(...), coll.gossip_round(...)
    coll.send(buf, dest, tag), coll.recv_any(buf, status), coll.wait(requests)
    with coll.uncounted(): ...                     # evaluation traffic is not training traffic
    coll.counters.total, coll.debug.total(), coll.calls    # bytes, checked calls, algorithms run

Everything that used to be process-global lives in the instance: the byte counters
(``common.ByteCounter``), the debug mode (``debug.DebugMode``: on/off and sequence
numbers), the auto threshold and the ``select.CommContext`` (node layout, shared
windows; created collectively on the first message above the threshold). Two
instances in one process share nothing (tests/mpi_progs/collectives_cases.py).

Forcing an algorithm for a whole run: ``Collectives(comm, impl="ring")``, or
``MPIDML_ALLREDUCE_IMPL=ring`` in the environment of every rank (what
bench/auto_training.py uses for its "before" rows).

Replicas stay bit-identical whatever ``auto`` picks: every algorithm returns the same
bits on every rank (see ``select.policy``), and the pick itself depends only on the
message size, the communicator size and the node layout — the same on every rank.
The result of one step may differ between algorithms in the last bits (different
summation order), never between ranks.

Control fields are named: ``CONTROL`` is the layout ``[loss, count, stop, nan]`` of the
four numbers every control point sums over ranks; algorithms fuse it into their own
buffer (``CONTROL.pack(buf[n:], values)`` / ``CONTROL.unpack(buf[n:])``) or send it
alone (``control_exchange``).
"""

from __future__ import annotations

import atexit
import os

import numpy as np

from . import debug as _debug
from .common import DEFAULT_COUNTERS, ByteCounter, allreduce_buffers
from .control import CONTROL, ControlLayout, ControlValues
from .select import BCAST_IMPLS, IMPLS, CommContext, env_small_bytes, native_allreduce, policy
from .tags import Tag

__all__ = ["Collectives", "ControlValues", "ControlLayout", "CONTROL", "default_for", "release_default", "Tag"]




class Collectives:
    """Collective communication on one communicator, with its own counters and debug mode.

    ``debug``: True/False, or None for ``MPIDML_DEBUG_COLLECTIVES``; ``counters``: share a
    ``ByteCounter`` (default: a new one); ``small_bytes``: the auto threshold (default
    ``MPIDML_SMALL_BYTES`` or 64 KiB); ``impl``: the algorithm of ``allreduce`` calls that
    do not name one (default ``MPIDML_ALLREDUCE_IMPL`` or "auto"). Every rank must build
    its instance with the same arguments."""

    def __init__(self, comm, *, debug: bool | _debug.DebugMode | None = None, counters: ByteCounter | None = None,
                 small_bytes: int | None = None, impl: str | None = None):
        self.comm = comm
        self.size, self.rank = comm.Get_size(), comm.Get_rank()
        self.counters = ByteCounter() if counters is None else counters
        self.debug = debug if isinstance(debug, _debug.DebugMode) else _debug.DebugMode(debug)
        self.small_bytes = env_small_bytes() if small_bytes is None else int(small_bytes)
        impl = impl or os.environ.get("MPIDML_ALLREDUCE_IMPL", "").strip() or "auto"
        if impl not in IMPLS:
            raise ValueError(f"allreduce impl must be one of {IMPLS}, got {impl!r} "
                             f"(Collectives(impl=...) or MPIDML_ALLREDUCE_IMPL)")
        self.impl = impl
        self.calls: dict[str, int] = {}      # allreduce calls per algorithm actually run
        self._context: CommContext | None = None
        self._control = np.zeros(CONTROL.size, dtype=np.float64)

    # ---- state ------------------------------------------------------------------------
    def context(self) -> CommContext:
        """Node layout and shared windows (collective on first use)."""
        if self._context is None:
            self._context = CommContext(self.comm)
            atexit.register(self._context.free_at_exit)
        return self._context

    def release(self) -> None:
        """Collective: free the windows and node communicators (made again if needed)."""
        ctx, self._context = self._context, None
        if ctx is not None:
            atexit.unregister(ctx.free_at_exit)
            ctx.free()

    def uncounted(self):
        """Context manager: traffic inside is not counted (evaluation, diagnostics)."""
        return self.counters.uncounted()

    # ---- allreduce --------------------------------------------------------------------
    def choose(self, nbytes: int, dtype=None) -> str:
        """The algorithm ``impl="auto"`` runs for ``nbytes`` (the same on every rank)."""
        if self.size == 1 or nbytes <= self.small_bytes:
            return policy(nbytes, self.size, None, self.small_bytes)
        return policy(nbytes, self.size, self.context().layout.num_nodes, self.small_bytes)

    def allreduce(self, buf: np.ndarray, op: str = "sum", *, impl: str | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
        """Allreduce of a 1-D buffer: in place (``out=None``: ``buf`` overwritten and
        returned) or into ``out`` (same size and dtype; ``buf`` untouched). ``op`` "sum" or
        "avg"; ``impl`` None uses the instance's (``auto`` unless forced). Every rank passes
        the same length, dtype, op and impl and gets back the same bits. ``buf`` may be
        any buffer-protocol array; out of place it is only read, so it may be read-only
        (in place, a read-only ``buf`` raises ``ValueError`` naming ``out=``).

        A dead peer (Open MPI with ULFM) raises ``runtime.ulfm.RankFailure`` on every
        survivor instead of MPI's error (``--on-failure shrink`` recovers from it)."""
        try:
            return self._allreduce(buf, op, impl, out)
        except Exception as exc:
            failure = self._failure(exc, "allreduce")
            if failure is None:
                raise
            raise failure from exc

    def _failure(self, exc: Exception, where: str):
        """The ``RankFailure`` that ``exc`` means (a peer died: ULFM's error classes), or None."""
        from ..runtime.ulfm import failure_error

        return failure_error(self.comm, exc, where)

    def _allreduce(self, buf, op, impl, out):
        impl = self.impl if impl is None else impl
        buf, out = allreduce_buffers(buf, out)
        dbg = self.debug
        if dbg.on and _debug.outermost():
            with dbg.checked(self.comm, "allreduce", buf, op=op, impl=impl):
                return self._allreduce(buf, op, impl, out)
        if op != "sum" and op != "avg":
            raise ValueError(f"op must be 'sum' or 'avg', got {op!r}")
        if impl == "auto":
            impl = self.choose(buf.nbytes, buf.dtype)
        elif impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.calls[impl] = self.calls.get(impl, 0) + 1
        ctr = self.counters
        if impl == "native":
            return native_allreduce(self.comm, buf, op, out=out, counters=ctr, debug=dbg)
        if impl in ("shm", "hier"):
            from .hierarchical import hierarchical_allreduce

            ctx = self.context()
            engine = ctx.engine(buf.dtype, buf.size)
            if impl == "shm":
                if ctx.layout.num_nodes != 1:
                    raise ValueError("impl='shm' needs all ranks on one node; use 'hier' across nodes")
                return engine.allreduce(buf, op, out=out, counters=ctr, debug=dbg)
            return hierarchical_allreduce(ctx.layout, engine, buf, op, out=out, counters=ctr, debug=dbg)
        if out is not buf:
            out[:] = buf   # the remaining algorithms reduce in place on the output buffer
        if impl == "none" or out.size == 0:
            return out
        if impl == "ring":
            from .ring import ring_allreduce

            return ring_allreduce(self.comm, out, op, counters=ctr, debug=dbg)
        from .rd import rd_allreduce

        return rd_allreduce(self.comm, out, op, counters=ctr, debug=dbg)

    # ---- broadcast, compressed allgather ------------------------------------------------
    def bcast(self, buf: np.ndarray, root: int = 0, *, impl: str = "native") -> np.ndarray:
        """Broadcast ``buf`` from ``root`` with one of ``BCAST_IMPLS`` (in place); a dead
        peer raises ``RankFailure`` (see ``allreduce``)."""
        try:
            return self._bcast(buf, root, impl)
        except Exception as exc:
            failure = self._failure(exc, "bcast")
            if failure is None:
                raise
            raise failure from exc

    def _bcast(self, buf: np.ndarray, root: int, impl: str) -> np.ndarray:
        dbg = self.debug
        if dbg.on and _debug.outermost():
            with dbg.checked(self.comm, "bcast", buf, root=root, impl=impl):
                return self._bcast(buf, root, impl)
        from .bcast import chain_bcast, shm_bcast, tree_bcast

        comm, ctr = self.comm, self.counters
        if impl == "native":
            comm.Bcast(buf, root=root)
            if self.rank == root:
                ctr.add(sent=(self.size - 1) * buf.nbytes)
            else:
                ctr.add(received=buf.nbytes)
            return buf
        if impl == "tree":
            return tree_bcast(comm, buf, root, counters=ctr, debug=dbg)
        if impl == "chain":
            return chain_bcast(comm, buf, root, counters=ctr, debug=dbg)
        if impl == "shm":
            ctx = self.context()
            if ctx.layout.num_nodes != 1:
                raise ValueError("impl='shm' needs all ranks on one node")
            return shm_bcast(ctx.engine(buf.dtype, max(buf.size, 1)), buf, root, counters=ctr, debug=dbg)
        raise ValueError(f"bcast impl must be one of {BCAST_IMPLS}, got {impl!r}")

    def allgather_sum(self, codec, g: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` = Σ over ranks of decode(encode(g_rank)), identical bits on every rank
        (``codecs.allgather_sum``)."""
        from .codecs import allgather_sum

        return allgather_sum(self.comm, codec, g, out, counters=self.counters, debug=self.debug)

    def reduce_sum(self, codec, g: np.ndarray, out: np.ndarray, tail: np.ndarray | None = None) -> np.ndarray:
        """``out`` = Σ over ranks of the compressed ``g``, reduced rather than gathered
        (bytes that do not grow linearly with p; ``codecs.reduce_sum``); identical bits on
        every rank. ``tail`` (fp16 only): float values summed in the same messages."""
        from .codecs import reduce_sum

        return reduce_sum(self.comm, codec, g, out, tail=tail, counters=self.counters, debug=self.debug)

    def shm_buffer(self, n: int, dtype) -> np.ndarray:
        """A fusion buffer of ``n`` elements in the node's shared window (no copy-in for
        ``allreduce(impl="shm"|"auto")``). Collective."""
        return self.context().engine(np.dtype(dtype), n).buffer(n)

    # ---- control points -----------------------------------------------------------------
    def control_exchange(self, values: ControlValues) -> ControlValues:
        """A control point on its own: the sum over ranks of every rank's ``values``
        (one 32-byte float64 allreduce; counted)."""
        CONTROL.pack(self._control, values)
        self.allreduce(self._control)
        return CONTROL.unpack(self._control)

    # ---- neighbours and point to point (counted) -------------------------------------------
    def neighbor_exchange(self, send: np.ndarray, neighbors: list[int], recv: list[np.ndarray]) -> None:
        from .gossip import neighbor_exchange

        neighbor_exchange(self.comm, send, neighbors, recv, counters=self.counters, debug=self.debug)

    def gossip_round(self, x: np.ndarray, W: np.ndarray, neighbors: list[int], scratch: list[np.ndarray]):
        from .gossip import gossip_round

        return gossip_round(self.comm, x, W, neighbors, scratch, counters=self.counters, debug=self.debug)

    def shift_exchange(self, send: np.ndarray, recv: np.ndarray, shift: int) -> None:
        from .gossip import shift_exchange

        shift_exchange(self.comm, send, recv, shift, counters=self.counters, debug=self.debug)

    def send(self, buf: np.ndarray, dest: int, tag: Tag) -> None:
        """Blocking send of ``buf``, counted as sent."""
        self.comm.Send(buf, dest=dest, tag=int(tag))
        self.counters.add(sent=buf.nbytes)

    def recv_any(self, buf: np.ndarray, status) -> int:
        """The next message from any source with any tag, into ``buf``, waiting politely
        (``p2p.polite_recv``); counts and returns its byte length (``status`` tells the
        source and tag)."""
        from mpi4py import MPI

        from .p2p import polite_recv

        polite_recv(self.comm, buf, status)
        got = status.Get_count(MPI.BYTE)
        self.counters.add(received=got)
        return got

    def wait(self, requests: list, sent: int = 0, received: int = 0) -> None:
        """Wait politely for ``requests`` (``p2p.polite_wait``), then count ``sent`` and
        ``received`` bytes."""
        from .p2p import polite_wait

        polite_wait(requests)
        self.counters.add(sent=sent, received=received)

    def __repr__(self) -> str:
        return (f"Collectives(size={self.size}, impl={self.impl!r}, small_bytes={self.small_bytes}, "
                f"debug={self.debug.on}, bytes={self.counters.total})")


# ---- default instances: the module-level API (select.allreduce(comm, ...), ring_allreduce …) ----
# They count into common.DEFAULT_COUNTERS and check with debug.default, as before the
# Collectives object existed; training never uses them.
_defaults: dict[int, Collectives] = {}
_default_small: list[int | None] = [None]


def default_for(comm) -> Collectives:
    key = comm.py2f()
    coll = _defaults.get(key)
    if coll is None or coll.comm != comm:
        coll = _defaults[key] = Collectives(comm, debug=_debug.default, counters=DEFAULT_COUNTERS,
                                            small_bytes=_default_small[0], impl="auto")
    return coll


def release_default(comm) -> None:
    coll = _defaults.pop(comm.py2f(), None)
    if coll is not None:
        coll.release()


def default_small_bytes() -> int:
    return env_small_bytes() if _default_small[0] is None else _default_small[0]


def set_default_small_bytes(nbytes: int) -> None:
    _default_small[0] = int(nbytes)
    for coll in _defaults.values():
        coll.small_bytes = int(nbytes)
