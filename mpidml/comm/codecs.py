"""Gradient compression codecs and their exchange, with exact wire-byte counts.

    FP16      cast to float16 (2 bytes/element), dense
    TopK      the k largest |v| of v = g + residual, sent as (int32 index, value);
              error feedback: the residual keeps what was not sent, so over any
              number of steps  Σ sent + residual = Σ inputs  (exactly, up to the
              rounding of the additions)
    QSGD      stochastic quantisation to s levels (Alistarh 2017): a float32 norm
              plus one int8 per element (sign · level), unbiased: E[decode] = v

``Codec.encode`` returns a ``Payload`` (fixed-size numpy arrays); ``allgather_sum``
exchanges every rank's payload with mpidml's ring allgather (sparse top-k must be
gathered, not reduced: different ranks pick different indices) and each rank sums
the decoded contributions in rank order, so all ranks get the same bits. The bytes
that actually cross the wire are what the ring counts: (p − 1)·payload bytes per rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import debug as _debug
from .common import ByteCounter
from .ring import ring_allgather

__all__ = ["Payload", "FP16", "TopK", "QSGD", "make_codec", "allgather_sum", "pack", "unpack", "packed_size", "CODECS"]

CODECS = ("fp16", "topk", "qsgd")


@dataclass
class Payload:
    """Named fixed-size arrays: what one rank puts on the wire."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


class FP16:
    """Dense float16 cast."""

    name = "fp16"

    def encode(self, g: np.ndarray) -> Payload:
        return Payload({"v": g.astype(np.float16)})

    def decode_add(self, payload: Payload, out: np.ndarray) -> None:
        out += payload.arrays["v"].astype(out.dtype)

    def payload_shapes(self, n: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {"v": ((n,), np.dtype(np.float16))}


class TopK:
    """Top-k sparsification with error feedback (the residual lives in the codec)."""

    name = "topk"

    def __init__(self, n: int, k: int, dtype=np.float32, error_feedback: bool = True):
        if not 1 <= k <= max(n, 1):
            raise ValueError(f"top-k needs 1 <= k <= n, got k={k}, n={n}")
        self.n, self.k = n, k
        self.error_feedback = error_feedback
        self.residual = np.zeros(n, dtype=dtype)

    def encode(self, g: np.ndarray) -> Payload:
        v = self.residual
        if self.error_feedback:
            v += g                                   # v = g + residual (in place)
        else:
            v[:] = g                                 # plain top-k (CHOCO-SGD keeps its own memory)
        idx = np.argpartition(np.abs(v), self.n - self.k)[self.n - self.k:].astype(np.int32)
        idx.sort()
        vals = v[idx].copy()
        v[idx] = 0                                   # residual keeps what was not sent
        return Payload({"idx": idx, "val": vals})

    def decode_add(self, payload: Payload, out: np.ndarray) -> None:
        out[payload.arrays["idx"]] += payload.arrays["val"]   # indices are distinct: no np.add.at needed

    def payload_shapes(self, n: int):
        return {"idx": ((self.k,), np.dtype(np.int32)), "val": ((self.k,), self.residual.dtype)}


class QSGD:
    """Unbiased stochastic quantisation to ``levels`` levels per sign (≤ 127)."""

    name = "qsgd"

    def __init__(self, levels: int = 16, seed: int = 0):
        if not 1 <= levels <= 127:
            raise ValueError(f"QSGD levels must be in 1..127, got {levels}")
        self.levels = levels
        self.rng = np.random.default_rng(seed)

    def encode(self, g: np.ndarray) -> Payload:
        norm = float(np.linalg.norm(g))
        if norm == 0.0:
            q = np.zeros(g.size, dtype=np.int8)
        else:
            scaled = np.abs(g) * (self.levels / norm)
            lower = np.floor(scaled)
            level = lower + (self.rng.random(g.size) < (scaled - lower))
            q = (np.sign(g) * level).astype(np.int8)
        return Payload({"norm": np.array([norm], dtype=np.float32), "q": q})

    def decode_add(self, payload: Payload, out: np.ndarray) -> None:
        scale = out.dtype.type(payload.arrays["norm"][0] / self.levels)
        out += payload.arrays["q"].astype(out.dtype) * scale

    def payload_shapes(self, n: int):
        return {"norm": ((1,), np.dtype(np.float32)), "q": ((n,), np.dtype(np.int8))}


def make_codec(name: str, n: int, dtype=np.float32, ratio: float = 0.01, levels: int = 16, seed: int = 0,
               error_feedback: bool = True):
    """Codec by name: ``fp16``, ``topk`` (k = max(1, ratio·n)), ``qsgd``."""
    if name == "fp16":
        return FP16()
    if name == "topk":
        return TopK(n, max(1, int(round(ratio * n))), dtype, error_feedback)
    if name == "qsgd":
        return QSGD(levels, seed)
    raise ValueError(f"unknown codec {name!r}; choose from {CODECS}")


def allgather_sum(comm, codec, g: np.ndarray, out: np.ndarray, *, counters: ByteCounter | None = None,
                  debug: _debug.DebugMode | None = None) -> np.ndarray:
    """Collective: ``out`` = Σ over ranks of decode(encode(g_rank)), identical bits on
    every rank. Payloads travel through the ring allgather (counted in ``counters``)."""
    dbg = _debug.mode(debug)
    if dbg.on and _debug.outermost():
        with dbg.checked(comm, "allgather_sum", g, op=type(codec).__name__):
            return allgather_sum(comm, codec, g, out, counters=counters, debug=dbg)
    p, rank = comm.Get_size(), comm.Get_rank()
    n = g.size
    m = packed_size(codec, n)     # one rank's payload, all its arrays back to back
    buf = np.empty(m * p, dtype=np.uint8)   # segment r (m bytes) = rank r's payload
    pack(codec, codec.encode(g), n, out=buf[rank * m:(rank + 1) * m])
    if p > 1:   # ONE allgather for all payload arrays (latency, not bytes, dominates small models)
        ring_allgather(comm, buf, counters=counters, debug=dbg)
    out[:] = 0
    for r in range(p):
        codec.decode_add(unpack(codec, buf[r * m:(r + 1) * m], n), out)
    return out


def _layout(codec, n: int):
    """(name, shape, dtype, byte offset, byte size) of every payload array, packed back to back."""
    out, off = [], 0
    for name, (shape, dt) in codec.payload_shapes(n).items():
        size = int(np.prod(shape)) * dt.itemsize
        out.append((name, shape, dt, off, size))
        off += size
    return out, off


def pack(codec, payload: Payload, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """The payload as one contiguous uint8 buffer (for point-to-point exchanges)."""
    layout, total = _layout(codec, n)
    if out is None:
        out = np.empty(total, dtype=np.uint8)
    for name, _, _, off, size in layout:
        out[off:off + size] = payload.arrays[name].view(np.uint8).reshape(-1)
    return out


def unpack(codec, buf: np.ndarray, n: int) -> Payload:
    """Inverse of ``pack`` (views into ``buf``, no copies)."""
    layout, _ = _layout(codec, n)
    return Payload({name: buf[off:off + size].view(dt).reshape(shape) for name, shape, dt, off, size in layout})


def packed_size(codec, n: int) -> int:
    return _layout(codec, n)[1]
