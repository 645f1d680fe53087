"""The reductions of comm/compressed.py at one size p, many cases in one launch, against
numpy simulations of their documented summation order (bit for bit), float32 and float64.
Rank 0 prints one JSON line: {"p": p, "results": [{"case", "ok", "detail", "bad_ranks"}]}.

fp16_allreduce: segment s's chain starts on rank s+1 and ends on its owner s; each hop
adds its own gradient (in the accumulator dtype) to the fp16 partial sum it received;
the owner's sum is cast to fp16 once. The float64 tail is summed in the same ring order.
sparse_allreduce: each owner sums the pairs in its range in rank order (dense), so the
result equals numpy's rank-order dense sum exactly. qsgd_allreduce: every rank's
quantisation and each owner's re-quantisation are replayed with the same seeds.
Every case also checks identical bits on all ranks and the exact byte counts.
"""

import hashlib
import json
import sys

import numpy as np
from mpi4py import MPI

from mpidml.comm import compressed
from mpidml.comm.codecs import QSGD, TopK, allgather_sum, reduce_sum, topk_exchange
from mpidml.comm.collectives import Collectives
from mpidml.comm.common import ByteCounter, segment_counts

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
results = []


def record(name, ok, detail=""):
    oks = comm.allgather(bool(ok))
    results.append({"case": name, "ok": all(oks), "detail": str(detail) if not ok else "",
                    "bad_ranks": [r for r, o in enumerate(oks) if not o]})


def same_everywhere(x) -> bool:
    return len(set(comm.allgather(hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()))) == 1


def grads(n, dtype, r, trial=0):
    rng = np.random.default_rng([n, r, trial, 7])
    return (rng.standard_normal(n) * 10.0 ** rng.integers(-2, 2, n)).astype(dtype)


SIZES = (0, 1, 2, 3, 5, 7, 100, 101, 1001, 4099)

# ---- fp16 ------------------------------------------------------------------------------
for dtype in (np.float32, np.float64):
    acc_t = compressed.accumulator_dtype(dtype)
    for n in SIZES:
        G = [grads(n, dtype, r) for r in range(p)]
        tdt = np.float64 if n % 2 else np.float32       # both tail dtypes
        T = [np.array([r + 0.1, 3.0 * r, 1e-17 * (r + 1), 2.0 ** 40 + r], dtype=tdt) for r in range(p)]
        counts, offsets = segment_counts(n, p)
        ref = np.empty(n, dtype)
        tail_ref = None
        for s in range(p):
            a, c = offsets[s], counts[s]
            chain = [(s + j) % p for j in range(1, p + 1)]          # s+1, s+2, ..., s
            acc = G[chain[0]][a:a + c].astype(acc_t)
            t = T[chain[0]].copy() if s == p - 1 else None
            for r in chain[1:]:
                acc = G[r][a:a + c].astype(acc_t) + acc.astype(np.float16)
                if t is not None:
                    t = T[r] + t
            ref[a:a + c] = acc.astype(np.float16)
            if t is not None:
                tail_ref = t
        ctr = ByteCounter()
        out = np.full(n, np.nan, dtype)
        tail = T[rank].copy()
        compressed.fp16_allreduce(comm, G[rank], out, tail=tail, counters=ctr)
        size = [2 * counts[s] + (T[0].nbytes if s == p - 1 else 0) for s in range(p)]
        # reduce-scatter sends every segment but its own and receives all but its left's;
        # the allgather sends all but its right neighbour's and receives all but its own
        want_sent = 0 if p == 1 else (sum(size) - size[rank]) + (sum(size) - size[(rank + 1) % p])
        want_recv = 0 if p == 1 else (sum(size) - size[(rank - 1) % p]) + (sum(size) - size[rank])
        exact = np.sum([g.astype(np.float64) for g in G], axis=0) if n else np.zeros(0)
        scale = np.sum([np.abs(g.astype(np.float64)) for g in G], axis=0) if n else np.zeros(0)
        close = bool(np.all(np.abs(out - exact) <= (p + 1) * 2.0 ** -10 * scale + 1e-7))
        record(f"fp16_{np.dtype(dtype).name}_n{n}",
               np.array_equal(out, ref) and np.array_equal(tail, tail_ref if p > 1 else T[0])
               and same_everywhere(out) and same_everywhere(tail) and close
               and ctr.sent == want_sent and ctr.received == want_recv,
               f"max diff vs ring sim {np.abs(out - ref).max() if n else 0}, close {close}, "
               f"sent {ctr.sent} want {want_sent}, tail {tail} vs {tail_ref}")
    # without a tail, and fp16 bytes vs an fp32 ring allreduce
    n = 1001
    out = np.empty(n, dtype)
    ctr = ByteCounter()
    compressed.fp16_allreduce(comm, grads(n, dtype, rank), out, counters=ctr)
    counts, _ = segment_counts(n, p)
    ring_fp32 = 2 * (n - counts[rank]) * 4 if p > 1 else 0
    record(f"fp16_no_tail_half_of_fp32_ring_{np.dtype(dtype).name}",
           same_everywhere(out) and ctr.sent <= 0.5 * ring_fp32 + 4, (ctr.sent, ring_fp32))

# ---- sparse (top-k pairs) ----------------------------------------------------------------
for dtype in (np.float32, np.float64):
    for n in SIZES[1:]:
        for frac, overlap in ((0.01, False), (0.1, False), (0.1, True), (0.5, False), (1.0, False)):
            k = max(1, int(round(frac * n)))
            pairs = []
            for r in range(p):
                rng = np.random.default_rng([n, r, int(frac * 100), overlap])
                src = np.random.default_rng([n, 99]) if overlap else rng        # overlap: same indices
                idx = np.sort(src.choice(n, size=k, replace=False)).astype(np.int32)
                if r == p - 1 and k > 1:
                    idx = idx[: k // 2]                                          # fewer pairs than k
                pairs.append((idx, rng.standard_normal(idx.size).astype(dtype)))
            ref = np.zeros(n, dtype)
            for idx, val in pairs:
                ref[idx] += val
            ctr = ByteCounter()
            out = np.full(n, np.nan, dtype)
            compressed.sparse_allreduce(comm, pairs[rank][0], pairs[rank][1], out, k, counters=ctr)
            counts, offsets = segment_counts(n, p)
            item, pair = np.dtype(dtype).itemsize, 4 + np.dtype(dtype).itemsize
            mine = pairs[rank][0]
            rs_sent = sum(pair for i in mine if not offsets[rank] <= i < offsets[rank] + counts[rank])
            seg = [min(np.count_nonzero(ref[offsets[s]:offsets[s] + counts[s]]) * pair, counts[s] * item)
                   for s in range(p)]
            want = 0 if p == 1 else rs_sent + sum(seg) - seg[(rank + 1) % p]
            record(f"sparse_{np.dtype(dtype).name}_n{n}_k{k}{'_overlap' if overlap else ''}",
                   np.array_equal(out, ref) and same_everywhere(out) and ctr.sent == want,
                   f"diff {np.abs(out - ref).max()}, sent {ctr.sent} want {want}")

# ---- QSGD ------------------------------------------------------------------------------------
for dtype in (np.float32, np.float64):
    acc_t = compressed.accumulator_dtype(dtype)
    for n in SIZES[1:]:
        levels = 8
        G = [grads(n, dtype, r) for r in range(p)]
        sims = [QSGD(levels, seed=100 + r) for r in range(p)]
        Q = [sims[r].quantize(G[r]) for r in range(p)]
        counts, offsets = segment_counts(n, p)
        ref = np.empty(n, dtype)
        if p == 1:
            ref[:] = Q[0][1].astype(dtype) * dtype(Q[0][0][0] / levels)
        else:
            for s in range(p):
                a, c = offsets[s], counts[s]
                acc = np.zeros(c, acc_t)
                for r in range(p):
                    acc += Q[r][1][a:a + c].astype(acc_t) * acc_t.type(Q[r][0][0] / levels)
                norm, q = sims[s].quantize(acc)
                ref[a:a + c] = q.astype(dtype) * dtype(norm[0] / levels)
        ctr = ByteCounter()
        out = np.full(n, np.nan, dtype)
        compressed.qsgd_allreduce(comm, QSGD(levels, seed=100 + rank), G[rank], out, counters=ctr)
        size = [4 + c for c in counts]
        want = 0 if p == 1 else (sum(size) - size[rank]) + (sum(size) - size[(rank + 1) % p])
        want_recv = 0 if p == 1 else (p - 1) * size[rank] + (sum(size) - size[rank])
        exact = np.sum([g.astype(np.float64) for g in G], axis=0)
        record(f"qsgd_{np.dtype(dtype).name}_n{n}",
               np.array_equal(out, ref) and same_everywhere(out) and ctr.sent == want and ctr.received == want_recv,
               f"diff {np.abs(out - ref).max()}, sent {ctr.sent} want {want}, err {np.abs(out - exact).max()}")

# ---- top-k through reduce_sum: the exchange is chosen by bytes, same bits as the allgather ----
for dtype in (np.float32, np.float64):
    n, k = 2000, 40
    a_codec, b_codec = TopK(n, k, dtype), TopK(n, k, dtype)   # same inputs: same residuals
    coll = Collectives(comm)
    ok, picks = True, []
    for step in range(6):
        g = grads(n, dtype, rank, trial=step)
        if step >= 3:
            g[:50] += 100.0                  # every rank's top-k lands in the same 50 indices
        out_a, out_b = np.empty(n, dtype), np.empty(n, dtype)
        before = a_codec.exchange
        coll.reduce_sum(a_codec, g, out_a)
        allgather_sum(comm, b_codec, g, out_b)
        picks.append(before)
        ok = ok and np.array_equal(out_a, out_b) and same_everywhere(out_a)
        ok = (ok and a_codec.exchange == topk_exchange(k, out_a, p)
              and same_everywhere(np.array([ord(c) for c in a_codec.exchange])))
    # overlapping indices: the reduction moves fewer bytes from p = 3 (at p = 2 the union
    # of two top-k sets has at least k pairs, so the one-payload allgather is never worse)
    want_reduce = p > 2
    record(f"topk_reduce_sum_auto_{np.dtype(dtype).name}", ok and (picks[-1] == "reduce") == want_reduce, picks)
    try:
        reduce_sum(comm, a_codec, g, out_a, tail=np.zeros(4))
        record("topk_tail_refused", False)
    except ValueError:
        record("topk_tail_refused", True)
    coll.release()

if rank == 0:
    sys.stdout.write(json.dumps({"p": p, "results": results}) + "\n")
