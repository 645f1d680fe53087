"""Non-blocking allreduce (handle + wait) and a fusion buffer for many small tensors.

``iallreduce`` runs the chosen algorithm on a background thread over a private
duplicate of the communicator (so its messages never match the caller's), and
returns a handle; ``handle.wait()`` returns the buffer.

**Not a training feature.** No ``--algo`` uses it (every step's exchange is a blocking
``Collectives.allreduce``), and it hides no communication where it was measured:
``python -m mpidml.bench overlap`` at p = 2 on the 2-core test machine, 1 MiB float32
while a numba logistic gradient (60 000 × 100) runs, gave overlap −0.73 (issue 24) and
−3.4 (auto) / −6.6 (native) / −5.1 (ring) on a busier run of the same machine — negative:
compute + allreduce together took *longer* than one after the other. With one core per
rank the thread only time-slices against the kernel (numba's ``nogil`` releases the GIL,
but there is no spare core), and the thread's polling slows the kernel. Overlap would
need a spare core per rank or progress driven from inside the computation (chunked
compute between ``Test`` calls); neither is built. It is kept as an API for callers with
spare cores, who should run the bench on their machine first.

``FusionBuffer`` packs many small arrays into one flat buffer (views), so one
collective call moves them all instead of one call per tensor.
"""

from __future__ import annotations

import threading

import numpy as np

from .select import allreduce

__all__ = ["AllreduceHandle", "iallreduce", "FusionBuffer"]

_dups: dict[int, object] = {}
_dup_lock = threading.Lock()


def _private_dup(comm):
    key = comm.py2f()
    with _dup_lock:
        if key not in _dups:
            _dups[key] = comm.Dup()   # collective: all ranks reach the first iallreduce together
        return _dups[key]


class AllreduceHandle:
    """Result of ``iallreduce``: ``wait()`` blocks until done and returns the buffer
    (re-raising any error of the background operation); ``test()`` polls."""

    def __init__(self, target):
        self._result: np.ndarray | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target):
        try:
            self._result = target()
        except BaseException as exc:  # noqa: BLE001 - handed to wait()
            self._error = exc

    def test(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> np.ndarray:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def iallreduce(comm, buf: np.ndarray, op: str = "sum", impl: str = "auto",
               out: np.ndarray | None = None) -> AllreduceHandle:
    """Start an allreduce (same arguments as ``select.allreduce``); don't touch ``buf``
    or ``out`` until ``wait()``. At most one outstanding call per communicator."""
    dup = _private_dup(comm)
    return AllreduceHandle(lambda: allreduce(dup, buf, op=op, impl=impl, out=out))


class FusionBuffer:
    """One flat buffer holding several named tensors as views.

    >>> fb = FusionBuffer({"w1": (256, 100), "b1": (256,), "w2": (10, 256)}, np.float32)
    >>> fb["w1"][:] = ...;  allreduce(comm, fb.flat, op="avg")   # one call for all
    ``buffer=`` lets the flat storage be provided (e.g. ``select.shm_buffer`` so the
    fused tensors live in the shared window and the allreduce needs no copy-in).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype=np.float32, buffer=None):
        self.dtype = np.dtype(dtype)
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        sizes = [int(np.prod(s)) for s in self.shapes.values()]
        n = sum(sizes)
        if buffer is None:
            buffer = np.zeros(n, dtype=self.dtype)
        if buffer.size != n or buffer.dtype != self.dtype:
            raise ValueError(f"buffer must hold {n} x {self.dtype}, has {buffer.size} x {buffer.dtype}")
        self.flat = buffer
        self._views = {}
        off = 0
        for (name, shape), size in zip(self.shapes.items(), sizes):
            self._views[name] = self.flat[off:off + size].reshape(shape)
            off += size

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def names(self) -> list[str]:
        return list(self._views)
