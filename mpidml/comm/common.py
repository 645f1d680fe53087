"""What every mpidml collective shares: byte counters, the segment layout, buffer checks.

No MPI here (importable from ``data/`` and pure unit tests):

* ``ByteCounter`` — bytes one rank sent and received. Each ``Collectives`` owns one;
  the module-level functions (``ring_allreduce(comm, buf)`` …) count into
  ``DEFAULT_COUNTERS`` unless given ``counters=``.
* ``block_counts`` / ``segment_counts`` — the balanced split of ``n`` items into
  ``parts`` blocks (the ring's segments and the data partitioner's row blocks are the
  same function).
* ``check_buffer``, ``scale_mean``, ``scratch_buffer`` — the buffer contract, the
  ``op="avg"`` scaling, and the per-thread receive scratch of the collectives.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ByteCounter", "DEFAULT_COUNTERS", "counters_or_default", "block_counts", "segment_counts",
           "check_buffer", "scale_mean", "scratch_buffer", "REDUCIBLE"]

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
