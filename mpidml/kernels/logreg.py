"""Binary logistic regression kernels, dense and CSR rows, float32 and float64.

Parameters are one flat vector ``w`` of length ``d + 1``: weights ``w[:d]`` and the
bias ``w[d]``. Labels ``y`` are 0/1 (any numeric dtype). Kernels work on the rows
``rows`` of ``X`` (an index array: a shuffled minibatch is a slice of a permutation,
so no rows are copied) and read each row once (fused forward + backward). The dense
kernels take a C-contiguous ``X`` of the same dtype as ``w`` and ``grad`` (their SIMD
vectors do not type otherwise); the models and the CLIs guarantee both.

Loss of one row: softplus(z) − y·z with z = x·w[:d] + w[d], computed stably.
Regularisation is not applied here: it is added once to the global mean gradient.

Speed (see bench/kernels.py): the per-row σ and softplus use a branch-free
polynomial exp/log1p (no libm calls) so they vectorise across the rows of a block, in
the scratch's precision (float32 scratch: ~1e-7 relative error; float64: ~1e-16). Dense
rows go in blocks of BLOCK: each row's margin with explicit SIMD vectors (simd.py, one
row after the other), the block's residuals in one vectorised pass, then the gradient
update from L1, eight rows per pass over ``grad``. ``fastmath`` is limited to
reassociation and contraction (vectorised reductions, FMA); NaN and infinity semantics
are kept. ``error_model="numpy"`` removes the ZeroDivisionError branches that stop
vectorisation. The ``*_parallel`` variants split the rows into
``part.shape[0]`` contiguous chunks (use ``numba.get_num_threads()`` rows), each with
its own gradient row of ``part``, reduced at the end in chunk order: the result
depends on the number of chunks, never on thread scheduling.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._common import FASTMATH, add_rows8, chunk_bounds, consecutive, dot_row, sparse_dot, sum_parts_into, uidx, zero
from .simd import lanes, pow2_neg_f32, vadd, vfma, vload_tail, vsplat, vstore_tail, vsum, vzero

__all__ = [
    "logreg_loss_grad_dense", "logreg_loss_grad_dense_parallel", "logreg_correct_dense",
    "logreg_loss_grad_csr", "logreg_loss_grad_csr_parallel", "logreg_correct_csr", "new_scratch", "BLOCK",
    "logreg_partial_margins_dense", "logreg_partial_margins_csr", "logreg_residuals", "logreg_block_grad_dense",
    "logreg_block_grad_csr", "logreg_correct_margins", "dense_glm_range",
]


# exp(−a) for a in [0, _EXP_CLAMP] and log1p(e) for e in [0, 1] as straight-line
# arithmetic (no libm calls), so LLVM can interleave and vectorise them across the rows
# of a block. Range reduction a = k·ln2 + r, |r| ≤ ln2/2: exp(−a) = 2^−k · exp(−r), with
# exp(−r) from its degree-12 Taylor polynomial (truncation < 2e-16 relative) and 2^−k
# built from the bits of k (k < 64). Beyond the clamp exp(−a) < 5e-18 and replacing it by
# exp(−40) changes σ(z) and softplus(z) by < 5e-18 absolute (below float64 resolution
# where it matters). log1p(e) = 2·atanh(s), s = e/(2+e) ≤ 1/3: odd series to s^31
# (truncation < 2e-16 relative).
_EXP_CLAMP = 40.0
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _exp_neg(a):
    """exp(−a) for a ≥ 0 (clamped at 40), relative error ~1e-16. Float-only and
    branch-free (selects), so it vectorises with AVX2 (no float→int64 conversion)."""
    a = min(a, _EXP_CLAMP)
    kf = np.floor(a * _INV_LN2 + 0.5)
    r = (kf * _LN2_HI - a) + kf * _LN2_LO   # −r, in [−ln2/2, ln2/2]
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # × 2^−k, k = kf < 64, by its binary digits
    c = kf >= 32.0
    p *= 2.3283064365386963e-10 if c else 1.0
    kf -= 32.0 if c else 0.0
    c = kf >= 16.0
    p *= 1.52587890625e-05 if c else 1.0
    kf -= 16.0 if c else 0.0
    c = kf >= 8.0
    p *= 0.00390625 if c else 1.0
    kf -= 8.0 if c else 0.0
    c = kf >= 4.0
    p *= 0.0625 if c else 1.0
    kf -= 4.0 if c else 0.0
    c = kf >= 2.0
    p *= 0.25 if c else 1.0
    kf -= 2.0 if c else 0.0
    p *= 0.5 if kf >= 1.0 else 1.0
    return p


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _log1p_unit(e):
    """log(1 + e) for 0 ≤ e ≤ 1, relative error ~1e-16."""
    s = e / (2.0 + e)
    s2 = s * s
    q = 1.0 / 31.0
    q = q * s2 + 1.0 / 29.0
    q = q * s2 + 1.0 / 27.0
    q = q * s2 + 1.0 / 25.0
    q = q * s2 + 1.0 / 23.0
    q = q * s2 + 1.0 / 21.0
    q = q * s2 + 1.0 / 19.0
    q = q * s2 + 1.0 / 17.0
    q = q * s2 + 1.0 / 15.0
    q = q * s2 + 1.0 / 13.0
    q = q * s2 + 1.0 / 11.0
    q = q * s2 + 1.0 / 9.0
    q = q * s2 + 1.0 / 7.0
    q = q * s2 + 1.0 / 5.0
    q = q * s2 + 1.0 / 3.0
    q = q * s2 + 1.0
    return 2.0 * s * q


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _loss_and_residual(z, yi):
    """(softplus(z) − y·z, σ(z) − y) from one exp(−|z|), stable for any z; branch-free."""
    a = abs(z)
    e = _exp_neg(a)
    prob = (1.0 if z >= 0 else e) / (1.0 + e)
    return 0.5 * (z + a) + _log1p_unit(e) - yi * z, prob - yi


# Single-precision versions for float32 data: 16 lanes per 64-byte vector and short,
# shallow polynomials. A block's residuals are one or two vectors, so their latency (not
# their instruction count) is what costs: polynomials are evaluated in Estrin's scheme
# (a few levels of independent multiply-adds instead of one long Horner chain), and 2^−k
# is written straight into the exponent field. exp(−r): degree-7 Taylor, truncation
# < 6e-9. log1p(e) on [0, 1]: e·q(e) with q a degree-8 Chebyshev fit of log1p(e)/e
# (relative error ≤ 2.3e-7 in float32, no division). The clamp 24 keeps k ≤ 35;
# exp(−24) = 4e-11 is below float32 resolution next to 1.
_f32 = np.float32


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _exp_neg_f32(a):
    """exp(−a) for float32 a ≥ 0 (clamped at 24), relative error ~2e-7, branch-free."""
    a = min(a, _f32(24.0))
    kf = np.floor(a * _f32(_INV_LN2) + _f32(0.5))
    r = (kf * _f32(0.693145751953125) - a) + kf * _f32(1.428606765330187e-06)  # ln2 split for float32
    r2 = r * r
    p01 = _f32(1.0) + r
    p23 = _f32(0.5) + r * _f32(1.0 / 6.0)
    p45 = _f32(1.0 / 24.0) + r * _f32(1.0 / 120.0)
    p67 = _f32(1.0 / 720.0) + r * _f32(1.0 / 5040.0)
    p = (p01 + r2 * p23) + (r2 * r2) * (p45 + r2 * p67)
    return p * pow2_neg_f32(kf)


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _log1p_unit_f32(e):
    """log(1 + e) for float32 0 ≤ e ≤ 1, relative error ≤ 2.3e-7."""
    e2 = e * e
    e4 = e2 * e2
    q01 = _f32(1.0) + e * _f32(-0.49999502301216125)
    q23 = _f32(0.33319270610809326) + e * _f32(-0.24844369292259216)
    q45 = _f32(0.19111430644989014) + e * _f32(-0.13674770295619965)
    q67 = _f32(0.07836166769266129) + e * _f32(-0.02958850748836994)
    return e * ((q01 + e2 * q23) + e4 * ((q45 + e2 * q67) + e4 * _f32(0.005253457929939032)))


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _add_row(grad, x, s, d):
    for j in range(d):
        grad[j] += s * x[j]
    grad[d] += s


BLOCK = 16  # rows per block: z and y of a block live in a (2, BLOCK) scratch


def new_scratch(dtype=np.float64) -> np.ndarray:
    """Scratch for one call of the serial kernels (own it and reuse it: no allocation).

    Its dtype is the precision of the per-row σ / softplus: pass the data's dtype
    (float32 data with float32 scratch runs the 8-lane single-precision path)."""
    return np.empty((2, BLOCK), dtype)


def _residual_block(zb, yb, nb):
    """zb[:nb] (logits) → σ(z) − y in place; return the block's summed loss (float64).
    Plain loops over arrays with branch-free arithmetic: LLVM vectorises them. The
    precision follows the scratch dtype (overloads below)."""
    raise NotImplementedError  # only callable from @njit code


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _residual_block_f64(zb, yb, nb):
    loss = 0.0
    for u in range(nb):
        li, ri = _loss_and_residual(zb[u], yb[u])
        loss += li
        zb[u] = ri
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _residual_block_f32(zb, yb, nb):
    loss = _f32(0.0)
    for u in range(nb):
        z = zb[u]
        yi = yb[u]
        e = _exp_neg_f32(abs(z))
        prob = (_f32(1.0) if z >= _f32(0.0) else e) / (_f32(1.0) + e)
        # softplus(z) − y·z = max(z, 0) + log1p(e^−|z|) − y·z (max: no overflow at |z| ~ 3e38)
        loss += max(z, _f32(0.0)) + _log1p_unit_f32(e) - yi * z
        zb[u] = prob - yi
    return float(loss)


@overload(_residual_block, jit_options=dict(cache=True, nogil=True), inline="always")
def _residual_block_ov(zb, yb, nb):
    if isinstance(zb, types.Array) and zb.dtype == types.float32:
        return lambda zb, yb, nb: _residual_block_f32(zb, yb, nb)
    return lambda zb, yb, nb: _residual_block_f64(zb, yb, nb)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _squared_block(zb, yb, nb):
    """Least squares: zb[:nb] (margins) → z − y in place; return Σ ½(z − y)² (float64)."""
    loss = 0.0
    for u in range(nb):
        r = float(zb[u]) - float(yb[u])
        loss += 0.5 * r * r
        zb[u] = r
    return loss


REGISTER_VECTORS = 8  # rows of up to 8 vectors (128 float32 / 64 float64) take the register path


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _dense_range_regs(X, y, rows, lo, hi, w, grad, scratch, logistic):
    """``dense_glm_range`` for rows of at most REGISTER_VECTORS vectors: ``w`` and the
    gradient stay in vector registers for the whole call (w0..w7, g0..g7), so per row
    only X is loaded, once from memory for the margin and once from L1 for the update
    (~40 % fewer loads than the general path: 79–83 % of the read bound against 69–74 %
    on the benchmark's 400,000 x 100 float32). Vectors past the row length are skipped
    by well-predicted branches; the last one is a masked (tail) vector. The margin and the
    update are written out vector by vector on purpose: the 16 vectors are named values
    that LLVM keeps in registers, where a loop would need an array, i.e. memory."""
    d = X.shape[1]
    n = lanes(w)
    nv = (d + n - 1) // n
    zb = scratch[0]
    yb = scratch[1]
    w0, w1, w2, w3 = vload_tail(w, 0, d), vload_tail(w, n, d), vload_tail(w, 2 * n, d), vload_tail(w, 3 * n, d)
    w4, w5, w6, w7 = vload_tail(w, 4 * n, d), vload_tail(w, 5 * n, d), vload_tail(w, 6 * n, d), vload_tail(w, 7 * n, d)
    g0, g1 = vload_tail(grad, 0, d), vload_tail(grad, n, d)
    g2, g3 = vload_tail(grad, 2 * n, d), vload_tail(grad, 3 * n, d)
    g4, g5 = vload_tail(grad, 4 * n, d), vload_tail(grad, 5 * n, d)
    g6, g7 = vload_tail(grad, 6 * n, d), vload_tail(grad, 7 * n, d)
    bias = w[d]
    gb = grad[d]
    run = consecutive(rows, lo, hi)
    first = rows[lo] - lo if run else 0
    loss = 0.0
    for b0 in range(lo, hi, BLOCK):
        nb = min(BLOCK, hi - b0)
        for u in range(nb):
            i = first + b0 + u if run else rows[b0 + u]
            a = vzero(w)
            c = vzero(w)
            a = vfma(vload_tail(X, (i, 0), d), w0, a)
            if nv > 1:
                c = vfma(vload_tail(X, (i, n), d), w1, c)
            if nv > 2:
                a = vfma(vload_tail(X, (i, 2 * n), d), w2, a)
            if nv > 3:
                c = vfma(vload_tail(X, (i, 3 * n), d), w3, c)
            if nv > 4:
                a = vfma(vload_tail(X, (i, 4 * n), d), w4, a)
            if nv > 5:
                c = vfma(vload_tail(X, (i, 5 * n), d), w5, c)
            if nv > 6:
                a = vfma(vload_tail(X, (i, 6 * n), d), w6, a)
            if nv > 7:
                c = vfma(vload_tail(X, (i, 7 * n), d), w7, c)
            zb[u] = vsum(vadd(a, c)) + bias
            yb[u] = y[i]
        loss += _residual_block(zb, yb, nb) if logistic else _squared_block(zb, yb, nb)
        for u in range(nb):
            i = first + b0 + u if run else rows[b0 + u]
            r = grad.dtype.type(zb[u])
            s = vsplat(grad, r)
            gb += r
            g0 = vfma(vload_tail(X, (i, 0), d), s, g0)
            if nv > 1:
                g1 = vfma(vload_tail(X, (i, n), d), s, g1)
            if nv > 2:
                g2 = vfma(vload_tail(X, (i, 2 * n), d), s, g2)
            if nv > 3:
                g3 = vfma(vload_tail(X, (i, 3 * n), d), s, g3)
            if nv > 4:
                g4 = vfma(vload_tail(X, (i, 4 * n), d), s, g4)
            if nv > 5:
                g5 = vfma(vload_tail(X, (i, 5 * n), d), s, g5)
            if nv > 6:
                g6 = vfma(vload_tail(X, (i, 6 * n), d), s, g6)
            if nv > 7:
                g7 = vfma(vload_tail(X, (i, 7 * n), d), s, g7)
    vstore_tail(grad, 0, d, g0)
    vstore_tail(grad, n, d, g1)
    vstore_tail(grad, 2 * n, d, g2)
    vstore_tail(grad, 3 * n, d, g3)
    vstore_tail(grad, 4 * n, d, g4)
    vstore_tail(grad, 5 * n, d, g5)
    vstore_tail(grad, 6 * n, d, g6)
    vstore_tail(grad, 7 * n, d, g7)
    grad[d] = gb
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_glm_range(X, y, rows, lo, hi, w, grad, scratch, logistic=True):
    """Add the gradient of rows[lo:hi] into ``grad``; return their summed loss: the
    logistic loss, or with ``logistic=False`` least squares (lsq.py uses this too).

    Blocks of BLOCK rows: (1) the rows' margins (``dot_row``), one row after the other,
    the order the hardware prefetcher follows best; when rows[lo:hi] are consecutive (a
    whole shard, an unshuffled batch) row numbers are counted, not loaded, which streams
    ~10 % faster; (2) the vectorised loss/residual of the block; (3) the gradient
    update from L1, eight rows per pass over ``grad``. Rows of up to REGISTER_VECTORS
    vectors go to ``_dense_range_regs``.
    """
    d = X.shape[1]
    if d <= REGISTER_VECTORS * lanes(w):
        return _dense_range_regs(X, y, rows, lo, hi, w, grad, scratch, logistic)
    zb = scratch[0]
    yb = scratch[1]
    run = consecutive(rows, lo, hi)
    first = rows[lo] - lo if run else 0
    loss = 0.0
    for b0 in range(lo, hi, BLOCK):
        nb = min(BLOCK, hi - b0)
        if run:  # written out here: as an inlined helper this loop measured ~15 % slower
            for u in range(nb):
                i = first + b0 + u
                zb[u] = dot_row(X, i, w, d)
                yb[u] = y[i]
        else:
            for u in range(nb):
                i = rows[b0 + u]
                zb[u] = dot_row(X, i, w, d)
                yb[u] = y[i]
        loss += _residual_block(zb, yb, nb) if logistic else _squared_block(zb, yb, nb)
        u = 0
        while u + 8 <= nb:
            add_rows8(grad, X, rows, b0, zb, u, d)
            u += 8
        while u < nb:
            _add_row(grad, X[rows[b0 + u]], grad.dtype.type(zb[u]), d)
            u += 1
    return loss


@njit(cache=True, nogil=True)
def logreg_loss_grad_dense(X, y, rows, w, grad, scratch=None):
    """Sum over ``rows`` of the logistic loss (returned, float64) and its gradient.

    ``grad`` (length d + 1, dtype of ``w``) is overwritten with the summed gradient
    over the selected rows: Σ (σ(z_i) − y_i)·[x_i, 1]. ``scratch`` is a (2, BLOCK)
    array (``new_scratch(X.dtype)``); pass one to allocate nothing (models do). Its
    dtype sets the precision of σ and the loss; without one, X's dtype is used.
    """
    zero(grad)
    if scratch is None:
        return dense_glm_range(X, y, rows, 0, rows.shape[0], w, grad, np.empty((2, BLOCK), X.dtype))
    return dense_glm_range(X, y, rows, 0, rows.shape[0], w, grad, scratch)


@njit(cache=True, nogil=True, parallel=True)
def logreg_loss_grad_dense_parallel(X, y, rows, w, grad, part):
    """``logreg_loss_grad_dense`` with ``prange`` over one row chunk per thread.

    ``part`` (chunks × (d + 1), dtype of ``w``; chunks = numba.get_num_threads())
    holds the per-chunk gradients; they are summed into ``grad`` in chunk order.
    """
    nt = part.shape[0]
    m = rows.shape[0]
    losses = np.zeros(nt)  # nt floats: the only allocation
    for c in prange(nt):
        lo, hi = chunk_bounds(m, nt, c)
        g = part[c]
        zero(g)
        losses[c] = dense_glm_range(X, y, rows, lo, hi, w, g, np.empty((2, BLOCK), X.dtype))
    sum_parts_into(part, grad)
    return losses.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def logreg_correct_dense(X, y, rows, w):
    """Number of ``rows`` whose predicted class (z > 0 → 1) equals the 0/1 label."""
    d = X.shape[1]
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = dot_row(X, i, w, d)
        pred = 1.0 if z > 0 else 0.0
        if pred == y[i]:
            correct += 1
    return correct


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _csr_range(data, indices, indptr, y, rows, lo, hi, w, grad, scratch):
    """CSR rows rows[lo:hi], in blocks like ``dense_glm_range``."""
    d = grad.shape[0] - 1
    zb = scratch[0]
    yb = scratch[1]
    loss = 0.0
    for b0 in range(lo, hi, BLOCK):
        nb = min(BLOCK, hi - b0)
        for u in range(nb):
            i = rows[b0 + u]
            zb[u] = w[d] + sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
            yb[u] = y[i]
        loss += _residual_block(zb, yb, nb)
        for u in range(nb):
            i = rows[b0 + u]
            s = grad.dtype.type(zb[u])
            for p in range(uidx(indptr[i]), uidx(indptr[i + 1])):
                grad[uidx(indices[p])] += s * data[p]
            grad[d] += s
    return loss


@njit(cache=True, nogil=True)
def logreg_loss_grad_csr(data, indices, indptr, y, rows, w, grad, scratch=None):
    """CSR rows (``data, indices, indptr``): summed loss (returned) and gradient into
    ``grad`` (length d + 1, overwritten); ``scratch`` as for the dense kernel."""
    zero(grad)
    if scratch is None:
        return _csr_range(data, indices, indptr, y, rows, 0, rows.shape[0], w, grad, np.empty((2, BLOCK), data.dtype))
    return _csr_range(data, indices, indptr, y, rows, 0, rows.shape[0], w, grad, scratch)


@njit(cache=True, nogil=True, parallel=True)
def logreg_loss_grad_csr_parallel(data, indices, indptr, y, rows, w, grad, part):
    """``logreg_loss_grad_csr`` with one row chunk and one gradient row of ``part`` per thread."""
    nt = part.shape[0]
    m = rows.shape[0]
    losses = np.zeros(nt)
    for c in prange(nt):
        lo, hi = chunk_bounds(m, nt, c)
        g = part[c]
        zero(g)
        losses[c] = _csr_range(data, indices, indptr, y, rows, lo, hi, w, g, np.empty((2, BLOCK), data.dtype))
    sum_parts_into(part, grad)
    return losses.sum()


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def logreg_correct_csr(data, indices, indptr, y, rows, w):
    """Number of CSR ``rows`` whose predicted class (z > 0 → 1) equals the 0/1 label."""
    d = w.shape[0] - 1
    correct = 0
    for t in range(rows.shape[0]):
        i = rows[t]
        z = w[d] + sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
        pred = 1.0 if z > 0 else 0.0
        if pred == y[i]:
            correct += 1
    return correct


# ---------------------------------------------------------------------------------------
# The same loss and gradient in three separable stages, for model parallelism over
# column blocks (algos/feature_parallel.py): each rank's block of columns gives partial
# margins; their sum over ranks (a collective, outside the kernels) plus the bias is the
# margin; residuals σ(z) − y follow; each rank's block gradient is Σ r·x[block].


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def logreg_partial_margins_dense(X, rows, w, z):
    """z[t] = Σ_j X[rows[t], j]·w[j] over the columns of ``X`` (no bias); ``w`` has at
    least ``X.shape[1]`` entries; ``z`` (length len(rows)) is overwritten."""
    d = X.shape[1]
    for t in range(rows.shape[0]):
        x = X[rows[t]]
        s = z.dtype.type(0)
        for j in range(d):
            s += x[j] * w[j]
        z[t] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def logreg_partial_margins_csr(data, indices, indptr, rows, w, z):
    """CSR version of ``logreg_partial_margins_dense``."""
    for t in range(rows.shape[0]):
        i = rows[t]
        z[t] = sparse_dot(data, indices, indptr[i], indptr[i + 1], w)


@njit(cache=True, nogil=True)
def logreg_residuals(z, y, rows, b, scratch):
    """Margins ``z[t] + b`` of rows ``rows`` (labels ``y[rows[t]]``) → residuals
    σ(z + b) − y in place; returns the summed loss (float64). ``scratch`` as
    ``new_scratch(z.dtype)``: its dtype-matched vectorised path is the one the fused
    kernels use."""
    yb = scratch[1]
    m = rows.shape[0]
    loss = 0.0
    for b0 in range(0, m, BLOCK):
        nb = min(BLOCK, m - b0)
        zb = z[b0:b0 + nb]
        for u in range(nb):
            zb[u] += b
            yb[u] = y[rows[b0 + u]]
        loss += _residual_block(zb, yb, nb)
    return loss


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def logreg_block_grad_dense(X, rows, r, grad):
    """grad[:d] = Σ_t r[t]·X[rows[t]], grad[d] = Σ_t r[t] (d = X.shape[1]; grad length
    d + 1, overwritten): the gradient of the block's weights and of the bias."""
    d = X.shape[1]
    zero(grad)
    T = grad.dtype.type
    for t in range(rows.shape[0]):
        _add_row(grad, X[rows[t]], T(r[t]), d)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def logreg_block_grad_csr(data, indices, indptr, rows, r, grad):
    """CSR version of ``logreg_block_grad_dense`` (bias last, at ``grad[-1]``)."""
    d = grad.shape[0] - 1
    zero(grad)
    T = grad.dtype.type
    for t in range(rows.shape[0]):
        i = rows[t]
        s = T(r[t])
        for p in range(uidx(indptr[i]), uidx(indptr[i + 1])):
            grad[uidx(indices[p])] += s * data[p]
        grad[d] += s


@njit(cache=True, nogil=True)
def logreg_correct_margins(z, y, rows, b):
    """How many of ``rows`` have (z[t] + b > 0) equal to their 0/1 label."""
    correct = 0
    for t in range(rows.shape[0]):
        pred = 1.0 if z[t] + b > 0 else 0.0
        if pred == y[rows[t]]:
            correct += 1
    return correct
