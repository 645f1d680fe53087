"""What every mpidml collective shares: byte counters, the segment layout, buffer checks.

No MPI here (importable from ``data/`` and pure unit tests):

* ``ByteCounter`` — bytes one rank sent and received. Each ``Collectives`` owns one;
  the module-level functions (``ring_allreduce(comm, buf)`` …) count into
  ``DEFAULT_COUNTERS`` unless given ``counters=``.
* ``block_counts`` / ``segment_counts`` — the balanced split of ``n`` items into
  ``parts`` blocks (the ring's segments and the data partitioner's row blocks are the
  same function).
* ``check_buffer``, ``as_buffer``, ``allreduce_buffers``, ``scale_mean``,
  ``scratch_buffer`` — the buffer contract (any buffer-protocol array in, read-only
  input only out of place), the ``op="avg"`` scaling, and the per-thread receive
  scratch of the collectives.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ALLREDUCE_IMPLS", "BCAST_IMPLS",
           "ByteCounter", "DEFAULT_COUNTERS", "counters_or_default", "block_counts", "segment_counts",
           "check_buffer", "as_buffer", "allreduce_buffers", "scale_mean", "scratch_buffer", "REDUCIBLE"]

#: the allreduce and broadcast implementations a caller may name (``impl=``); the one list
#: that comm/select.py dispatches on and ``python -m mpidml.bench --impl`` offers
ALLREDUCE_IMPLS = ("auto", "ring", "rd", "shm", "hier", "native")
BCAST_IMPLS = ("native", "tree", "chain", "shm")

REDUCIBLE = (np.float32, np.float64, np.int32, np.int64)


@dataclass
class ByteCounter:
    """Bytes this rank sent and received through mpidml collectives (thread-safe:
    a non-blocking collective updates it from its own thread)."""

    sent: int = 0
    received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.sent += int(sent)
            self.received += int(received)

    def reset(self) -> None:
        with self._lock:
            self.sent = 0
            self.received = 0

    @property
    def total(self) -> int:
        return self.sent + self.received

    @contextlib.contextmanager
    def uncounted(self):
        """Traffic inside the block is not counted (evaluation, diagnostics)."""
        with self._lock:
            before = (self.sent, self.received)
        try:
            yield
        finally:
            with self._lock:
                self.sent, self.received = before


#: where the module-level functions count when no ``counters=`` is given
DEFAULT_COUNTERS = ByteCounter()


def counters_or_default(counters: ByteCounter | None) -> ByteCounter:
    return DEFAULT_COUNTERS if counters is None else counters


def block_counts(n: int, parts: int) -> list[int]:
    """Sizes of the ``parts`` balanced blocks of ``n`` items (first ``n % parts`` get one more)."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, rem = divmod(n, parts)
    return [base + 1 if i < rem else base for i in range(parts)]


def segment_counts(n: int, p: int) -> tuple[list[int], list[int]]:
    """Segment lengths and offsets of an ``n``-element buffer split over ``p`` ranks."""
    counts = block_counts(n, p)
    offsets = [0] * p
    for i in range(1, p):
        offsets[i] = offsets[i - 1] + counts[i - 1]
    return counts, offsets


def check_buffer(buf: np.ndarray, reduce: bool) -> None:
    """Raise ``TypeError`` unless ``buf`` is a 1-D C-contiguous array (of a reducible
    dtype when ``reduce``)."""
    if not isinstance(buf, np.ndarray) or buf.ndim != 1 or not buf.flags.c_contiguous:
        raise TypeError("mpidml collectives need a 1-D C-contiguous numpy array")
    if reduce and buf.dtype.type not in REDUCIBLE:
        raise TypeError(f"mpidml reductions support float32/float64/int32/int64, not {buf.dtype}")


def as_buffer(buf, *, reduce: bool, writeable: bool, name: str = "buf") -> np.ndarray:
    """``buf`` as the 1-D C-contiguous numpy array a collective works on, without a copy.

    Accepts a numpy array or any object exporting the buffer protocol (``array.array``,
    ``memoryview``, ``bytearray``, ...), viewed zero-copy. An input that is only read
    (``writeable=False``) may also be anything ``np.asarray`` takes (e.g. a JAX array,
    whose NumPy view is read-only). Raises ``TypeError`` / ``ValueError`` naming what
    is wrong and the fix; a collective that would write into a read-only buffer says
    to pass ``out=`` (out of place) instead.
    """
    if not isinstance(buf, np.ndarray):
        try:
            view = memoryview(buf)
        except TypeError:
            if writeable:
                raise TypeError(
                    f"{name}: a {type(buf).__module__}.{type(buf).__qualname__} is not a numpy array and "
                    f"exports no buffer, so an in-place collective cannot write into it; reduce out of place "
                    f"with out=np.empty(...) (the input is only read)") from None
            buf = np.asarray(buf)
        else:
            buf = np.asarray(view)     # zero-copy; read-only iff the exporter is
    check_buffer(buf, reduce)
    if writeable and not buf.flags.writeable:
        raise ValueError(
            f"{name} is read-only (e.g. np.asarray of a JAX array or a read-only view) and this collective "
            f"writes its result into it: pass out=np.empty_like({name}) to reduce out of place (the input is "
            f"only read), or a writeable copy")
    return buf


def allreduce_buffers(buf, out) -> tuple[np.ndarray, np.ndarray]:
    """The (input, output) arrays of an allreduce: ``out=None`` (or ``out is buf``) is in
    place and needs a writeable ``buf``; otherwise ``buf`` is only read (read-only is
    fine) and ``out`` must be writeable, of the same size and dtype."""
    if out is None or out is buf:
        buf = as_buffer(buf, reduce=True, writeable=True)
        return buf, buf
    buf = as_buffer(buf, reduce=True, writeable=False)
    out = as_buffer(out, reduce=True, writeable=True, name="out")
    if out.size != buf.size or out.dtype != buf.dtype:
        raise ValueError(f"out has {out.size} x {out.dtype}, buf has {buf.size} x {buf.dtype}")
    return buf, out


def scale_mean(seg: np.ndarray, p: int) -> None:
    """``op="avg"``: divide a reduced segment by ``p`` in place (floor for integers)."""
    if seg.dtype.kind == "f":
        seg *= seg.dtype.type(1.0 / p)
    else:
        seg //= p


# One reusable receive buffer per dtype and thread, grown on demand: no allocation per
# call, and a non-blocking collective on its own thread never shares the caller's.
_scratch = threading.local()


def scratch_buffer(dtype: np.dtype, n: int) -> np.ndarray:
    table = getattr(_scratch, "by_dtype", None)
    if table is None:
        table = _scratch.by_dtype = {}
    buf = table.get(dtype.str)
    if buf is None or buf.size < n:
        buf = np.empty(max(n, 1), dtype=dtype)
        table[dtype.str] = buf
    return buf[:n]
