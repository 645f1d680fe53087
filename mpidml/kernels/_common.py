"""Small @njit helpers shared by the kernel modules (no MPI, no objects)."""

import numpy as np
from numba import njit

__all__ = ["FASTMATH", "add_scaled", "chunk_bounds", "zero"]

# Reassociation and contraction only: lets LLVM vectorise reductions and use FMA,
# but keeps NaN/inf semantics (no 'nnan'/'ninf'), so overflow guards still work.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True, inline="always")
def chunk_bounds(m, nchunks, c):
    """[lo, hi) of chunk ``c`` of ``m`` items split into ``nchunks`` balanced parts."""
    # int64 throughout: prange indices may be unsigned, and mixing signed and
    # unsigned integers makes numba promote to float64.
    m, nchunks, c = np.int64(m), np.int64(nchunks), np.int64(c)
    q = m // nchunks
    r = m - q * nchunks
    lo = c * q + min(c, r)
    hi = lo + q + (np.int64(1) if c < r else np.int64(0))
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def zero(a):
    """a[:] = 0 for a 1-D array, without allocating."""
    for j in range(a.shape[0]):
        a[j] = 0


@njit(cache=True, nogil=True)
def add_scaled(dst, src, a):
    """dst += a · src elementwise (1-D, same length), in place, without temporaries."""
    for j in range(dst.shape[0]):
        dst[j] += a * src[j]


@njit(cache=True, nogil=True)
def sum_parts_into(part, out):
    """out[:] = Σ_c part[c, :] — reduce per-thread gradient buffers (prange variants)."""
    zero(out)
    for c in range(part.shape[0]):
        for j in range(out.shape[0]):
            out[j] += part[c, j]
