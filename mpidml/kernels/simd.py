"""Explicit SIMD vectors for @njit kernels: 64-byte vectors as numba values.

LLVM's auto-vectoriser handles short rows badly: for a 100-float row it picks a
64-wide unrolled body that runs once, then a narrower epilogue loop and a scalar
remainder, each with its own horizontal reduction. The kernels here say exactly what
they mean instead: a ``Vec`` is one LLVM vector of 64 bytes (16 float32 or 8 float64
lanes; LLVM splits it into two registers on AVX2, one on AVX-512, four on SSE/NEON),
the tail of a row is one masked load or store, and a reduction is one shuffle tree.
Everything is plain LLVM IR (vector types, ``llvm.masked.load/store``, ``fmul``/``fadd``
with the ``contract`` flag so FMA is used where the CPU has it), so it compiles on any
target numba supports and caches with ``cache=True``.

    a = vzero(w)                       # accumulators typed after the array's dtype
    j = 0
    while j + lanes(w) <= d:
        a = vfma(vload(x, j), vload(w, j), a)
        j += lanes(w)
    a = vfma(vload_tail(x, j, d), vload_tail(w, j, d), a)
    s = vsum(a)

Arrays are 1-D (index ``j``) or 2-D (index ``(row, j)``, no row view needed) and must be
C-contiguous (checked when the kernel is typed); indices are not bounds-checked, exactly like
numba's own indexing without ``boundscheck``.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["Vec", "lanes", "pow2_neg_f32", "vload", "vload_tail", "vstore", "vstore_tail", "vsplat", "vzero", "vfma",
           "vadd", "vsum"]

VECTOR_BYTES = 64


class Vec(types.Type):
    """One SIMD vector of ``lanes`` elements of ``dtype`` (a numba float type)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


_FLAGS = ("contract",)
_I32 = ir.IntType(32)


def _indexable(arr, idx):
    """``arr[idx]`` names a run of elements: a 1-D float array and an integer, or a 2-D one
    and a pair of integers (row, column). The array must be C-contiguous (a 1-D one may
    also be 'F'): its elements along the last axis are then adjacent. An array whose
    layout numba does not know ('A') does not type, rather than being read wrongly."""
    if not (isinstance(arr, types.Array) and isinstance(arr.dtype, types.Float)):
        return False
    if not (arr.layout == "C" or (arr.ndim == 1 and arr.layout == "F")):
        return False
    if arr.ndim == 1:
        return isinstance(idx, types.Integer)
    return (arr.ndim == 2 and isinstance(idx, types.UniTuple) and idx.count == 2
            and isinstance(idx.dtype, types.Integer))


def _pointer(context, builder, aryty, ary, idxty, idx, vt):
    """Pointer to ``ary[idx]`` typed as a pointer to the vector type, and the last index
    (int64) for tail masks."""
    a = context.make_array(aryty)(context, builder, ary)
    if aryty.ndim == 1:
        ids = [context.cast(builder, idx, idxty, types.intp)]
    else:
        ids = [context.cast(builder, v, idxty.dtype, types.intp) for v in cgutils.unpack_tuple(builder, idx)]
    ptr = cgutils.get_item_pointer2(context, builder, a.data, cgutils.unpack_tuple(builder, a.shape),
                                    cgutils.unpack_tuple(builder, a.strides), aryty.layout, ids,
                                    wraparound=False, boundscheck=False)
    return builder.bitcast(ptr, context.get_value_type(vt).as_pointer()), ids[-1]


def _tail_mask(builder, idx, n, nlanes):
    """<nlanes x i1>: lane k is on when idx + k < n (idx, n: intp)."""
    left = builder.sub(n, idx)
    cap = left.type(nlanes)
    left = builder.trunc(builder.select(builder.icmp_signed("<", left, cap), left, cap), _I32)
    vty = ir.VectorType(_I32, nlanes)
    left_v = builder.insert_element(cgutils.get_null_value(vty), left, _I32(0))
    left_v = builder.shuffle_vector(left_v, left_v, ir.Constant(vty, [_I32(0)] * nlanes))
    return builder.icmp_signed("<", ir.Constant(vty, [_I32(k) for k in range(nlanes)]), left_v)


def _masked_intrinsic(builder, name, vty):
    """``llvm.masked.load`` / ``llvm.masked.store`` for the vector type ``vty``."""
    elem = "f32" if isinstance(vty.element, ir.FloatType) else "f64"
    ptr_t = vty.as_pointer()
    mask_t = ir.VectorType(ir.IntType(1), vty.count)
    if name == "load":
        fnty = ir.FunctionType(vty, [ptr_t, _I32, mask_t, vty])
    else:
        fnty = ir.FunctionType(ir.VoidType(), [vty, ptr_t, _I32, mask_t])
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.{name}.v{vty.count}{elem}.p0")


@intrinsic
def lanes(typingctx, arr):
    """Number of lanes of the vectors of ``arr``'s dtype (a compile-time constant)."""
    if not isinstance(arr, types.Array):
        return None
    n = Vec(arr.dtype).lanes
    return types.intp(arr), lambda context, builder, sig, args: context.get_constant(types.intp, n)


@intrinsic
def vload(typingctx, arr, idx):
    """The vector ``arr[idx : idx + lanes]`` (1-D) or ``arr[r, j : j + lanes]`` for
    ``idx = (r, j)`` (2-D): an unaligned load, not bounds-checked."""
    if not _indexable(arr, idx):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        ptr, _ = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], vt)
        return builder.load(ptr, align=arr.dtype.bitwidth // 8)
    return vt(arr, idx), codegen


@intrinsic
def vload_tail(typingctx, arr, idx, n):
    """``vload`` with the lanes whose last index is ``n`` or more read as 0 (and not read)."""
    if not (_indexable(arr, idx) and isinstance(n, types.Integer)):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr, j = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], vt)
        mask = _tail_mask(builder, j, context.cast(builder, args[2], sig.args[2], types.intp), vt.lanes)
        fn = _masked_intrinsic(builder, "load", vty)
        return builder.call(fn, [ptr, _I32(arr.dtype.bitwidth // 8), mask, cgutils.get_null_value(vty)])
    return vt(arr, idx, n), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):
    """Store ``v`` where ``vload(arr, idx)`` would load (unaligned, not bounds-checked)."""
    if not (_indexable(arr, idx) and isinstance(v, Vec) and v.dtype == arr.dtype):
        return None

    def codegen(context, builder, sig, args):
        ptr, _ = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], v)
        builder.store(args[2], ptr, align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.void(arr, idx, v), codegen


@intrinsic
def vstore_tail(typingctx, arr, idx, n, v):
    """``vstore`` of the lanes whose last index is below ``n``; nothing else is written."""
    if not (_indexable(arr, idx) and isinstance(n, types.Integer) and isinstance(v, Vec) and v.dtype == arr.dtype):
        return None

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(v)
        ptr, j = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1], v)
        mask = _tail_mask(builder, j, context.cast(builder, args[2], sig.args[2], types.intp), v.lanes)
        builder.call(_masked_intrinsic(builder, "store", vty), [args[3], ptr, _I32(arr.dtype.bitwidth // 8), mask])
        return context.get_dummy_value()
    return types.void(arr, idx, n, v), codegen


@intrinsic
def vsplat(typingctx, arr, x):
    """A vector of ``arr``'s dtype with every lane equal to ``x``."""
    if not (isinstance(arr, types.Array) and isinstance(arr.dtype, types.Float) and isinstance(x, types.Number)):
        return None
    vt = Vec(arr.dtype)

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        s = context.cast(builder, args[1], sig.args[1], arr.dtype)
        v = builder.insert_element(cgutils.get_null_value(vty), s, _I32(0))
        return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, vt.lanes), [_I32(0)] * vt.lanes))
    return vt(arr, x), codegen


@intrinsic
def vzero(typingctx, arr):
    """A zero vector of ``arr``'s dtype."""
    if not (isinstance(arr, types.Array) and isinstance(arr.dtype, types.Float)):
        return None
    vt = Vec(arr.dtype)
    return vt(arr), lambda context, builder, sig, args: cgutils.get_null_value(context.get_value_type(vt))


@intrinsic
def vfma(typingctx, a, b, c):
    """a·b + c lane by lane (fused where the CPU has FMA: ``contract``)."""
    if not (isinstance(a, Vec) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(builder.fmul(args[0], args[1], flags=_FLAGS), args[2], flags=_FLAGS)
    return a(a, b, c), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b lane by lane."""
    if not (isinstance(a, Vec) and a == b):
        return None
    return a(a, b), lambda context, builder, sig, args: builder.fadd(args[0], args[1])


@intrinsic
def vsum(typingctx, v):
    """Sum of the lanes, as a pairwise tree (halves added until one lane is left): a fixed
    order, so the result does not depend on the CPU's vector width."""
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, sig, args):
        x = args[0]
        n = v.lanes
        while n > 1:
            h = n // 2
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, h), [_I32(k) for k in range(h)]))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, h), [_I32(k + h) for k in range(h)]))
            x = builder.fadd(lo, hi)
            n = h
        return builder.extract_element(x, _I32(0))
    return v.dtype(v), codegen


@intrinsic
def pow2_neg_f32(typingctx, k):
    """2^−k as float32 for an integer-valued float32 ``k`` in [0, 126], built directly in the
    exponent field (convert, subtract, shift, reinterpret: four instructions that LLVM
    vectorises), instead of a chain of multiplications."""
    if k != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i = builder.fptosi(args[0], _I32)
        bits = builder.shl(builder.sub(_I32(127), i), _I32(23))
        return builder.bitcast(bits, ir.FloatType())
    return types.float32(k), codegen
