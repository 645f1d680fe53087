"""Small @njit helpers shared by the kernel modules (no MPI, no objects)."""

import numpy as np
from numba import njit

__all__ = ["FASTMATH", "add_scaled", "chunk_bounds", "row_dot", "sparse_dot", "sum_parts_into", "zero"]

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


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def row_dot(x, w, d):
    """Margin of a dense row: w[d] + Σ_j x[j]·w[j] (the bias is the last parameter)."""
    z = w[d]
    for j in range(d):
        z += x[j] * w[j]
    return z


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def sparse_dot(data, indices, a, b, w):
    """Σ data[p]·w[indices[p]] over p in [a, b) with four independent accumulators
    (the gathers of w overlap instead of waiting on one addition chain)."""
    s0 = w.dtype.type(0)
    s1 = s0
    s2 = s0
    s3 = s0
    p = a
    while p + 4 <= b:
        s0 += data[p] * w[indices[p]]
        s1 += data[p + 1] * w[indices[p + 1]]
        s2 += data[p + 2] * w[indices[p + 2]]
        s3 += data[p + 3] * w[indices[p + 3]]
        p += 4
    while p < b:
        s0 += data[p] * w[indices[p]]
        p += 1
    return (s0 + s1) + (s2 + s3)
