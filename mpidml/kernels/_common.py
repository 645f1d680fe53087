"""Small @njit helpers shared by the kernel modules (no MPI, no objects)."""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["FASTMATH", "add_scaled", "chunk_bounds", "prefetch", "prefetch_row", "row_dot", "sparse_dot",
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


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def row_dot(x, w, d):
    """Margin of a dense row: w[d] + Σ_j x[j]·w[j] (the bias is the last parameter)."""
    z = w[d]
    for j in range(d):
        z += x[j] * w[j]
    return z


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


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to bring the cache line holding ``arr[idx]`` (1-D array) into all cache
    levels (``llvm.prefetch``: read, high locality, data). No effect on results; on CPUs
    without prefetch instructions LLVM drops it. Used to fetch the next block of rows
    while the current one is being computed on (the hardware prefetcher stops running
    ahead while a kernel works from L1, and cannot follow a shuffled row order)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(idx, types.Integer)):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, sig, args):
        aryty, idxty = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer2(context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape),
                                        cgutils.unpack_tuple(builder, ary.strides), aryty.layout, [i],
                                        wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p],
                                              ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_row(x):
    """Prefetch every 64-byte line of the 1-D array ``x`` (one row of X)."""
    step = max(1, 64 // x.itemsize)
    for j in range(0, x.shape[0], step):
        prefetch(x, j)
