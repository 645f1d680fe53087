"""Size sanity limits: an absurd size in a data file fails with exit 2 naming the file and
row, before anything of that size is allocated (never a ``MemoryError`` traceback).

The limit is the memory this process may use: ``MPIDML_MEMORY_LIMIT`` (bytes, or with a
K/M/G/T suffix) if set, else the node's ``MemAvailable`` (``/proc/meminfo``), else its
physical memory. Checked against it:

* the model a data set implies: ``MODEL_COPIES`` arrays of ``d`` (features: the CSR
  ``shape`` attribute or dense ``/X``'s width) times ``K`` (classes: largest label + 1)
  values — parameters, gradient and optimizer buffers;
* what one rank reads into memory (its rows of ``/X``, or its nonzeros).

Ranks sharing a node each hold a model, so the real bound is lower by their count; the
check catches absurd sizes (a label of 1e9, a ``shape`` claiming 5e9 columns), it does not
plan memory.
"""

from __future__ import annotations

import os

import numpy as np

from ..runtime.errors import MpidmlError

__all__ = ["MODEL_COPIES", "memory_limit", "gib", "check_model_size", "check_read_size"]

MODEL_COPIES = 4   # parameters, gradient, two optimizer buffers (adam; momentum has one)
_ENV = "MPIDML_MEMORY_LIMIT"


def memory_limit() -> int:
    """Bytes this process may allocate (see the module docstring)."""
    raw = os.environ.get(_ENV, "").strip()
    if raw:
        t = raw.upper().removesuffix("B")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
        try:
            return int(float(t[:-1] if scale > 1 else t) * scale)
        except ValueError:
            raise MpidmlError(f"{_ENV}={raw!r}: a size in bytes (e.g. 512M, 8G) expected") from None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 62


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _source() -> str:
    return _ENV if os.environ.get(_ENV, "").strip() else "available memory"


def check_model_size(path: str, d: int, classes: int, itemsize: int, why) -> None:
    """Raise if a model of ``d`` x ``classes`` values (``classes`` 1: one weight per
    feature) cannot fit: ``why`` (a string, or a function giving it: called only on
    failure) names the row or attribute that implies the size."""
    need = MODEL_COPIES * float(d) * max(1, classes) * itemsize
    limit = memory_limit()
    if need > limit:
        why = why() if callable(why) else why
        shape = f"d x K = {d} x {classes}" if classes > 1 else f"d = {d}"
        raise MpidmlError(f"{path}: {why}: a model of {shape} values needs {gib(need)} ({MODEL_COPIES} "
                          f"copies: parameters, gradient, optimizer buffers) but the {_source()} is "
                          f"{gib(limit)}")


def check_read_size(path: str, a: int, b: int, nbytes: int, what: str) -> None:
    """Raise if reading ``nbytes`` (rows ``a..b-1`` of ``path``) cannot fit in memory."""
    limit = memory_limit()
    if nbytes > limit:
        raise MpidmlError(f"{path}: rows {a}..{b - 1} ({what}) need {gib(nbytes)} in memory but the "
                          f"{_source()} is {gib(limit)}: use more ranks or --memory-budget")


def largest_column(f, path: str, block: int = 1 << 24) -> tuple[int, int]:
    """``(column, row)``: the largest column index in CSR file ``f`` and a row holding it
    (a scan of ``/X/indices`` in blocks: for error messages only)."""
    indices = f["X/indices"]
    best, pos = -1, -1
    for a in range(0, indices.shape[0], block):
        part = indices[a:a + block]
        if part.size:
            k = int(np.argmax(part))
            if int(part[k]) > best:
                best, pos = int(part[k]), a + k
    if pos < 0:
        return -1, -1
    indptr = f["X/indptr"]
    lo, hi = 0, indptr.shape[0] - 1     # binary search: the row r with indptr[r] <= pos < indptr[r+1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if int(indptr[mid]) <= pos:
            lo = mid
        else:
            hi = mid
    return best, lo
