"""Small @njit helpers shared by the kernel modules (no MPI, no objects)."""

import numpy as np
from numba import njit

from .simd import lanes, vfma, vload, vload_tail, vsplat, vstore, vstore_tail, vsum, vzero

__all__ = ["FASTMATH", "add_rows8", "add_scaled", "chunk_bounds", "consecutive", "dot_row", "sparse_dot",
           "sum_parts_into", "touched_columns", "uidx", "zero"]

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
def consecutive(rows, lo, hi):
    """Whether rows[lo:hi] (non-empty) are consecutive row numbers r, r + 1, …"""
    if hi <= lo:
        return False
    r0 = rows[lo] - lo
    for t in range(lo + 1, hi):
        if rows[t] != r0 + t:
            return False
    return True


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
def touched_columns(indptr, indices, rows, mark, out, n):
    """Append to ``out[n:]`` the columns of CSR ``rows`` not yet marked in ``mark`` (a
    zeroed uint8 array of length d, left marked); returns the new count. Call it once per
    piece of a batch, then sort ``out[:n]`` and clear ``mark`` at those columns."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for k in range(indptr[r], indptr[r + 1]):
            j = indices[k]
            if mark[j] == 0:
                mark[j] = 1
                out[n] = j
                n += 1
    return n


@njit(cache=True, nogil=True)
def sum_parts_into(part, out):
    """out[:] = Σ_c part[c, :] — reduce per-thread gradient buffers (prange variants)."""
    zero(out)
    for c in range(part.shape[0]):
        for j in range(out.shape[0]):
            out[j] += part[c, j]


@njit(cache=True, nogil=True, inline="always")
def uidx(i):
    """``i`` as an unsigned index (uintp): no wrap-around code when indexing with it."""
    return np.uintp(i)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def sparse_dot(data, indices, a, b, w):
    """Σ data[p]·w[indices[p]] over p in [a, b).

    Positions and column indices are used as unsigned integers (``uidx``): numba then
    skips its negative-index wrap-around (a sign test and add per access), which made
    this gather ~1.7x slower than scipy's. CSR indices are non-negative by contract
    (the data layer validates them)."""
    s = w.dtype.type(0)
    for p in range(uidx(a), uidx(b)):
        s += data[p] * w[uidx(indices[p])]
    return s


# Dense rows with explicit SIMD vectors (simd.py): one vector per 64 bytes of a row, the
# row's tail as one masked vector, no remainder loops. The helpers take the 2-D array and
# row numbers (no row views: views inlined into branching code cost two atomic reference
# count updates each). Measured on the 400k x 100 float32 logistic gradient
# (bench/results/kernels-analysis.md): streaming one row at a time keeps the hardware
# prefetcher ahead (four interleaved rows cost ~40 % more from memory); the update from L1
# takes eight rows per load/store of ``grad``.


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def dot_row(X, i, w, d):
    """Margin of dense row ``i``: w[d] + Σ_j X[i, j]·w[j] (lanes summed as a fixed tree, so
    a row's margin does not depend on which rows are around it)."""
    n = lanes(w)
    a = vzero(w)
    for j in range(0, d - n + 1, n):
        a = vfma(vload(X, (i, j)), vload(w, j), a)
    j = d - d % n
    a = vfma(vload_tail(X, (i, j), d), vload_tail(w, j, d), a)
    return vsum(a) + w[d]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def add_rows8(grad, X, rows, o, r, u, d):
    """grad += Σ_{q<8} r[u+q]·[X[rows[o+u+q]], 1]: one load and store of grad per eight rows."""
    n = lanes(grad)
    T = grad.dtype.type
    i0, i1, i2, i3 = rows[o + u], rows[o + u + 1], rows[o + u + 2], rows[o + u + 3]
    i4, i5, i6, i7 = rows[o + u + 4], rows[o + u + 5], rows[o + u + 6], rows[o + u + 7]
    r0, r1, r2, r3 = T(r[u]), T(r[u + 1]), T(r[u + 2]), T(r[u + 3])
    r4, r5, r6, r7 = T(r[u + 4]), T(r[u + 5]), T(r[u + 6]), T(r[u + 7])
    v0, v1, v2, v3 = vsplat(grad, r0), vsplat(grad, r1), vsplat(grad, r2), vsplat(grad, r3)
    v4, v5, v6, v7 = vsplat(grad, r4), vsplat(grad, r5), vsplat(grad, r6), vsplat(grad, r7)
    for j in range(0, d - n + 1, n):
        g = vload(grad, j)
        g = vfma(vload(X, (i0, j)), v0, g)
        g = vfma(vload(X, (i1, j)), v1, g)
        g = vfma(vload(X, (i2, j)), v2, g)
        g = vfma(vload(X, (i3, j)), v3, g)
        g = vfma(vload(X, (i4, j)), v4, g)
        g = vfma(vload(X, (i5, j)), v5, g)
        g = vfma(vload(X, (i6, j)), v6, g)
        g = vfma(vload(X, (i7, j)), v7, g)
        vstore(grad, j, g)
    j = d - d % n
    g = vload_tail(grad, j, d)
    g = vfma(vload_tail(X, (i0, j), d), v0, g)
    g = vfma(vload_tail(X, (i1, j), d), v1, g)
    g = vfma(vload_tail(X, (i2, j), d), v2, g)
    g = vfma(vload_tail(X, (i3, j), d), v3, g)
    g = vfma(vload_tail(X, (i4, j), d), v4, g)
    g = vfma(vload_tail(X, (i5, j), d), v5, g)
    g = vfma(vload_tail(X, (i6, j), d), v6, g)
    g = vfma(vload_tail(X, (i7, j), d), v7, g)
    vstore_tail(grad, j, d, g)
    grad[d] += ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
