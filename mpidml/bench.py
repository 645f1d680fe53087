"""``python -m mpidml.bench``: collective microbenchmarks in the columns HPC people read.

    mpiexec -n 2 python -m mpidml.bench allreduce -m 4:64M --impl auto,native,ring

For every message size and every implementation (interleaved, so machine noise hits
all of them alike) it times ``-i`` iterations after ``-x`` warm-up ones, ``-r`` times,
and reports the median repetition. A repetition's time is the slowest rank's mean
time per call (the collective is done when its last rank is). The data are
integer-valued and the op is a sum, so results are exact: before every timed call its
result buffer is reset (out of place: zeroed; in place: refilled with the input) and
after it the result is compared element by element with the expected one, both
outside the timed interval. ``#wrong`` = wrong elements summed over every timed call
of every repetition and over ranks (nccl-tests checks one extra call after the loop).

    MPIDML_BENCH_CORRUPT=IMPL:REP:CALL   (tests) rank 0 adds 1 to the first element of
                                          that timed call's result before it is checked

    algbw = size / time;  busbw = algbw · 2(p−1)/p for allreduce, · (p−1)/p for
    reduce-scatter and allgather, · 1 for bcast (nccl-tests' definitions)

``membound`` (allreduce, reduce_scatter): the time for every rank, concurrently, to do
``a += b`` over n/p elements and copy n(p−1)/p elements — the least memory traffic
a reduce-scatter + allgather needs — measured in the same run; ``%mem`` = membound /
time. ``--fit`` fits t = a + b·n per algorithm and projects ring and recursive
doubling to larger p with the α-β model (a projection, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np

from . import __version__
from .comm.common import ALLREDUCE_IMPLS, BCAST_IMPLS

__all__ = ["main", "parse_size", "size_range", "bus_factor", "build_parser", "parse_args"]

COLLECTIVES = ("allreduce", "reduce_scatter", "allgather", "bcast", "overlap")
_IMPLS = {
    "allreduce": ALLREDUCE_IMPLS,
    "reduce_scatter": ("native", "ring"),
    "allgather": ("native", "ring"),
    "bcast": BCAST_IMPLS,
    "overlap": ALLREDUCE_IMPLS,
}
_DEFAULT_IMPLS = {"allreduce": "auto,native,ring,rd", "reduce_scatter": "native,ring",
                  "allgather": "native,ring", "bcast": "native,tree,chain,shm",
                  "overlap": "auto"}


def parse_size(text: str) -> int:
    """``"4"``, ``"64K"``, ``"16M"``, ``"1G"`` → bytes (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (examples: 4, 64K, 16M)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def size_range(spec: str, factor: int = 2) -> list[int]:
    """OSU ``-m MIN:MAX`` (or ``MAX``): sizes MIN, MIN·f, … ≤ MAX. Bad input raises
    ``argparse.ArgumentTypeError`` saying what is wrong."""
    if factor < 2:
        raise argparse.ArgumentTypeError(f"-f/--factor must be >= 2, got {factor}")
    lo, _, hi = spec.rpartition(":")
    lo_b, hi_b = parse_size(lo) if lo else 4, parse_size(hi)
    if lo_b < 1:
        raise argparse.ArgumentTypeError(f"bad size range {spec!r}: MIN must be >= 1 byte")
    if hi_b < lo_b:
        raise argparse.ArgumentTypeError(f"bad size range {spec!r}: MIN ({lo_b} B) > MAX ({hi_b} B); "
                                         f"write MIN:MAX, e.g. 4:64M")
    sizes, s = [], lo_b
    while s <= hi_b:
        sizes.append(s)
        s *= factor
    return sizes


def bus_factor(collective: str, p: int) -> float:
    if p == 1:
        return 1.0
    return {"allreduce": 2 * (p - 1) / p, "reduce_scatter": (p - 1) / p,
            "allgather": (p - 1) / p, "bcast": 1.0}[collective]


def _iterations(nbytes: int, max_iters: int) -> int:
    # Large messages: fewer calls, ~256 MiB moved per measurement (at least 5 calls).
    return max(5, min(max_iters, (256 << 20) // max(nbytes, 1)))


class _Case:
    """Buffers and one callable per implementation for one (collective, size)."""

    def __init__(self, comm, collective: str, count: int, dtype, sendbuf: str = "private",
                 inplace: bool = False):
        from .comm.ring import segment_counts

        self.comm, self.collective, self.count = comm, collective, count
        p, rank = comm.Get_size(), comm.Get_rank()
        self.p, self.rank = p, rank
        self.counts, self.offsets = segment_counts(count, p)
        pattern = (np.arange(count) % 7 + 1).astype(dtype)
        self.pattern = pattern
        if collective in ("allreduce", "reduce_scatter"):
            self.send = pattern * dtype(rank + 1)   # exact sums: pattern · p(p+1)/2
            self.expected = pattern * dtype(p * (p + 1) // 2)
        else:
            self.send = pattern.copy()
            self.expected = pattern
        self.out = np.empty(count, dtype=dtype)
        self.inplace = inplace and collective == "allreduce"
        self.window_send = None
        if sendbuf == "window" and collective == "allreduce" and comm.Get_size() > 1:
            from .comm import select
            self.window_send = select.shm_buffer(comm, count, dtype)

    def uses_window(self, impl: str) -> bool:
        return self.window_send is not None and impl in ("auto", "shm", "hier")

    def target(self, impl: str) -> np.ndarray:
        """The buffer that holds the result of ``impl``."""
        if self.inplace:
            return self.window_send if self.uses_window(impl) else self.out
        return self.out

    def prepare(self, impl: str) -> None:
        """Before a repetition of ``impl``: (re)fill the buffer ``impl`` reads (a
        window-resident send buffer may have been used as scratch by another
        implementation) and reset its result."""
        if self.uses_window(impl) and not self.inplace:
            self.window_send[:] = self.send
        self.reset(impl)

    def reset(self, impl: str) -> None:
        """Before every call (untimed): zero the result, or in place refill it with the
        input, so that each call's result is its own."""
        if self.inplace:
            self.target(impl)[:] = self.send
        else:
            self.out[:] = 0

    def run(self, impl: str):
        from mpi4py import MPI

        from .comm import select
        from .comm.ring import ring_allgather, ring_reduce_scatter

        comm, send, out = self.comm, self.send, self.out
        c, o, r = self.counts, self.offsets, self.rank
        mine = slice(o[r], o[r] + c[r])
        if self.collective == "allreduce":
            if impl == "native":   # plain MPI, called directly: no mpidml code in the timed call
                if self.inplace:
                    return lambda: comm.Allreduce(MPI.IN_PLACE, out)
                return lambda: comm.Allreduce(send, out)
            if self.inplace:
                buf = self.target(impl)
                return lambda: select.allreduce(comm, buf, impl=impl)
            src = self.window_send if self.uses_window(impl) else send
            return lambda: select.allreduce(comm, src, impl=impl, out=out)
        if self.collective == "reduce_scatter":
            if impl == "native":
                recv = out[mine]
                return lambda: comm.Reduce_scatter(send, recv, recvcounts=c, op=MPI.SUM)

            def rs():
                out[:] = send
                ring_reduce_scatter(comm, out)
            return rs
        if self.collective == "allgather":
            if impl == "native":
                return lambda: comm.Allgatherv(send[mine], [out, (c, o)])

            def ag():
                out[mine] = send[mine]
                ring_allgather(comm, out)
            return ag
        if self.collective == "bcast":
            if impl == "native":
                def bc_native():
                    if r == 0:
                        out[:] = send
                    comm.Bcast(out, root=0)
                return bc_native

            def bc():
                if r == 0:
                    out[:] = send
                select.bcast(comm, out, root=0, impl=impl)
            return bc
        raise ValueError(self.collective)

    def wrong(self, impl: str) -> int:
        """Wrong elements of ``impl``'s result on this rank (of the call just made)."""
        got = self.target(impl)
        if self.collective == "reduce_scatter":
            sl = slice(self.offsets[self.rank], self.offsets[self.rank] + self.counts[self.rank])
            return int(np.count_nonzero(got[sl] != self.expected[sl]))
        return int(np.count_nonzero(got != self.expected))

    def membound(self):
        """Concurrent a += b over n/p and a copy of n(p−1)/p elements on every rank."""
        share = self.counts[self.rank]
        a = np.ones(share, self.send.dtype)
        b = np.ones(share, self.send.dtype)
        src = np.ones(self.count - share, self.send.dtype)
        dst = np.empty_like(src)

        def touch():
            np.add(a, b, out=a)
            np.copyto(dst, src)
        return touch


def _time(comm, fn, iters: int, warmup: int) -> float:
    """Slowest rank's mean seconds per call, calls back to back (the membound row)."""
    for _ in range(warmup):
        fn()
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    mine = (time.perf_counter() - t0) / iters
    from mpi4py import MPI

    return comm.allreduce(mine, op=MPI.MAX)


def _time_checked(comm, case, impl: str, fn, iters: int, warmup: int, corrupt=None) -> tuple[float, int]:
    """(slowest rank's mean seconds per call, wrong elements summed over the timed calls
    and ranks). Every timed call is preceded by ``case.reset`` and followed by
    ``case.wrong``, both outside the timed interval. ``corrupt``: indices of timed calls
    whose result this rank damages before the check (fault injection for tests)."""
    from mpi4py import MPI

    for _ in range(warmup):
        fn()
    comm.Barrier()
    busy, wrong = 0.0, 0
    for i in range(iters):
        case.reset(impl)
        t0 = time.perf_counter()
        fn()
        busy += time.perf_counter() - t0
        if corrupt and i in corrupt:
            case.target(impl).reshape(-1)[:1] += 1
        wrong += case.wrong(impl)
    return comm.allreduce(busy / iters, op=MPI.MAX), comm.allreduce(wrong, op=MPI.SUM)


#: (sendbuf, inplace) configurations of an allreduce run; the first is what training does
#: (``coll.allreduce(buf)`` on the algorithm's own private numpy buffer, in place).
TRAINING_CONFIG = ("private", True)
_WINDOW_IMPLS = ("auto", "shm", "hier")


def configurations(sendbuf: str, place: str) -> list[tuple[str, bool]]:
    """``--sendbuf private|window|both`` × ``--place in|out|both`` → [(sendbuf, inplace)],
    private before window, in place before out of place."""
    bufs = ("private", "window") if sendbuf == "both" else (sendbuf,)
    places = (True, False) if place == "both" else (place == "in",)
    return [(b, ip) for b in bufs for ip in places]


def config_label(sendbuf: str, inplace: bool) -> str:
    return f"{'priv' if sendbuf == 'private' else 'win'}/{'in' if inplace else 'out'}"


def run_bench(comm, collective: str, sizes: list[int], impls: list[str], dtype, iters: int,
              warmup: int, reps: int, membound: bool, log, configs=(TRAINING_CONFIG,),
              corrupt: dict | None = None) -> list[dict]:
    """Time and check every (size, configuration, impl); one record each, plus one
    membound row per size. ``configs``: [(sendbuf, inplace)] (allreduce only; the other
    collectives have one). In a window configuration only the implementations that can
    use the window (auto, shm, hier) run, with native in the same place mode; ring and
    rd would repeat their private rows. Every repetition times every (configuration,
    impl) once, interleaved. ``vs_native`` compares with native in the same place mode,
    measured in the same configuration's repetitions. ``corrupt``: {(impl, rep): {call,
    ...}} timed calls whose result this rank damages before the check
    (``MPIDML_BENCH_CORRUPT``, for tests; applied in every configuration)."""
    from .comm import select

    p = comm.Get_size()
    corrupt = corrupt or {}
    item = np.dtype(dtype).itemsize
    if collective != "allreduce":
        configs = [("private", False)]
    records = []
    for nbytes in sizes:
        count = max(nbytes // item, 1 if nbytes else 0)
        cases, fns = {}, {}
        for sendbuf, inplace in configs:
            case = _Case(comm, collective, count, dtype, sendbuf, inplace)
            label = config_label(sendbuf, case.inplace) if collective == "allreduce" else "priv"
            cases[label] = case
            for impl in impls:
                if sendbuf == "window" and impl not in _WINDOW_IMPLS + ("native",):
                    continue
                fns[(label, impl)] = case.run(impl)
        first = next(iter(cases.values()))
        if membound and collective in ("allreduce", "reduce_scatter") and p > 1:
            fns[("-", "membound")] = first.membound()
        times = {k: [] for k in fns}
        wrong = dict.fromkeys(fns, 0)
        checked = dict.fromkeys(fns, 0)
        for rep in range(reps):
            for key, fn in fns.items():   # interleaved: each rep times every (config, impl) once
                label, impl = key
                if impl == "membound":
                    times[key].append(_time(comm, fn, _iterations(nbytes, iters), warmup))
                    continue
                case = cases[label]
                case.prepare(impl)
                n_iter = _iterations(nbytes, iters)
                t, bad = _time_checked(comm, case, impl, fn, n_iter, warmup, corrupt.get((impl, rep)))
                times[key].append(t)
                wrong[key] += bad
                checked[key] += n_iter
        mem = float(np.median(times[("-", "membound")])) if ("-", "membound") in times else None
        for (label, impl), ts in times.items():
            case = cases.get(label, first)
            native_ts = times.get((label, "native"))
            native = float(np.median(native_ts)) if native_ts else None
            t = float(np.median(ts))
            algbw = count * item / t / 1e9 if t > 0 else 0.0
            is_mem = impl == "membound"
            rec = {"collective": collective, "size": count * item, "count": count,
                   "type": np.dtype(dtype).name, "impl": impl, "p": p,
                   "config": label,
                   "sendbuf": "-" if is_mem else ("window" if case.uses_window(impl) else "private"),
                   "inplace": None if is_mem else case.inplace,
                   "algo": (select.choose(comm, count * item) if impl == "auto" and collective == "allreduce"
                            else impl),
                   "time_us": t * 1e6, "min_us": min(ts) * 1e6, "max_us": max(ts) * 1e6,
                   "algbw_GBps": algbw, "busbw_GBps": algbw * bus_factor(collective, p),
                   "wrong": wrong[(label, impl)], "checked_calls": checked[(label, impl)],
                   "iters": _iterations(nbytes, iters), "reps": reps,
                   "vs_native": (native / t) if native and impl not in ("native", "membound") else None,
                   "pct_membound": (100 * mem / t) if mem and not is_mem else None}
            records.append(rec)
            log(rec)
    return records


def run_overlap(comm, nbytes: int, impl: str, reps: int, log) -> dict:
    """Compute/communication overlap of ``iallreduce``: a numba logistic-gradient kernel
    (nogil) runs while an allreduce of ``nbytes`` is in flight. overlap = (t_compute +
    t_comm − t_both) / min(t_compute, t_comm): 1 = fully hidden, 0 = none."""
    from .comm import select
    from .comm.nonblocking import iallreduce
    from .kernels.logreg import logreg_loss_grad_dense

    rng = np.random.default_rng(comm.Get_rank())
    X = rng.standard_normal((60_000, 100)).astype(np.float32)
    y = (rng.random(60_000) < 0.5).astype(np.float32)
    rows = np.arange(X.shape[0], dtype=np.int64)
    w = np.zeros(101, np.float32)
    g = np.empty(101, np.float32)
    buf = np.ones(nbytes // 4, np.float32)

    def compute():
        logreg_loss_grad_dense(X, y, rows, w, g)

    def comm_only():
        select.allreduce(comm, buf, op="avg", impl=impl)

    def both():
        h = iallreduce(comm, buf, op="avg", impl=impl)
        compute()
        h.wait()

    ts = {"compute": [], "comm": [], "both": []}
    for fn in (compute, comm_only, both):
        fn()   # compile / warm up
    for _ in range(reps):
        for name, fn in (("compute", compute), ("comm", comm_only), ("both", both)):
            ts[name].append(_time(comm, fn, 5, 1))
    tc, tm, tb = (float(np.median(ts[k])) for k in ("compute", "comm", "both"))
    rec = {"collective": "overlap", "impl": impl, "size": nbytes, "p": comm.Get_size(),
           "compute_us": tc * 1e6, "comm_us": tm * 1e6, "both_us": tb * 1e6,
           "overlap": (tc + tm - tb) / min(tc, tm)}
    log(rec)
    return rec


def fit_cost_model(records: list[dict]) -> dict:
    """Least-squares t = a + b·bytes per implementation (relative error weighted), over the
    records of the first configuration it ran in."""
    out = {}
    for impl in sorted({r["impl"] for r in records}):
        config = next(r["config"] for r in records if r["impl"] == impl)   # the first configuration run
        rs = [r for r in records if r["impl"] == impl and r["config"] == config and r["size"] > 0]
        if len(rs) < 3:
            continue
        n = np.array([r["size"] for r in rs], float)
        t = np.array([r["time_us"] for r in rs], float) * 1e-6
        A = np.stack([np.ones_like(n), n], axis=1) / t[:, None]
        (a, b), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
        out[impl] = {"a_s": float(a), "b_s_per_byte": float(b), "p": rs[0]["p"], "config": config}
    return out


def project(model: dict, impl: str, P: int, nbytes: int) -> float | None:
    """α-β projection of a fitted ring or recursive-doubling allreduce to P ranks."""
    m = model.get(impl)
    if m is None or m["p"] < 2:
        return None
    p, a, b = m["p"], max(m["a_s"], 0.0), max(m["b_s_per_byte"], 0.0)
    if impl == "ring":
        alpha, beta = a / (2 * (p - 1)), b * p / (2 * (p - 1))
        return 2 * (P - 1) * alpha + 2 * (P - 1) / P * nbytes * beta
    if impl == "rd":
        steps = math.ceil(math.log2(p))
        alpha, beta = a / steps, b / steps
        return math.ceil(math.log2(P)) * (alpha + nbytes * beta)
    return None


def _header(collective, p, nodes, dtype, reps, warmup, impls, configs) -> str:
    if collective == "allreduce":
        modes = "; ".join(f"{config_label(b, ip)} = {'shared-window' if b == 'window' else 'private'} buffer, "
                          f"{'in place' if ip else 'out of place'}" for b, ip in configs)
        train = ("" if TRAINING_CONFIG in configs else
                 " (NOT measured here: priv/in, what training does)")
        where = (f"configurations {modes}{train}. native = comm.Allreduce(MPI.IN_PLACE, buf) / "
                 f"comm.Allreduce(send, recv) called directly (no mpidml code), always on private buffers, "
                 f"in the same place mode as the row; in win/* rows only auto/shm/hier use the window")
    else:
        where = "private buffers; native = the plain mpi4py call"
    return (f"# mpidml.bench {collective}: {p} rank(s) on {nodes} node(s), dtype {np.dtype(dtype).name}, "
            f"op sum on every side (no avg: no implementation scales); {where}\n"
            f"# before every timed call its result buffer is reset (out of place: zeroed; in place: refilled "
            f"with the input), after it compared element by element, both untimed\n"
            f"# impls {','.join(impls)}; time = median of {reps} interleaved repetitions of the slowest "
            f"rank's mean per call (min/max over repetitions); {warmup} warm-up calls; xnative = native "
            f"time in the same configuration / this time; %mem = membound / this time\n"
            f"# membound: every rank at once does a += b over n/p elements (reads 2n/p, writes n/p) and "
            f"copies n(p-1)/p (reads and writes n(p-1)/p): the least traffic of a reduce-scatter + "
            f"allgather; numpy, same run\n"
            f"# {'size(B)':>10} {'count':>10} {'type':>7} {'config':>8} {'impl':>8} {'algo':>6} {'time(us)':>10} "
            f"{'min(us)':>9} {'max(us)':>9} {'algbw':>7} {'busbw':>7} {'#wrong':>6} {'xnative':>7} {'%mem':>5}")


def _row(r: dict) -> str:
    vs = f"{r['vs_native']:.2f}" if r["vs_native"] else "-"
    pm = f"{r['pct_membound']:.0f}" if r["pct_membound"] else "-"
    wrong = "-" if r["impl"] == "membound" else r["wrong"]
    return (f"  {r['size']:>10} {r['count']:>10} {r['type']:>7} {r['config']:>8} {r['impl']:>8} {r['algo']:>6} "
            f"{r['time_us']:>10.1f} {r['min_us']:>9.1f} {r['max_us']:>9.1f} {r['algbw_GBps']:>7.2f} "
            f"{r['busbw_GBps']:>7.2f} {wrong:>6} {vs:>7} {pm:>5}")


def parse_table(text: str) -> list[dict]:
    """The rows of a bench table (stdout) as dicts keyed by the header's column names."""
    names = None
    rows = []
    for line in text.splitlines():
        if line.startswith("# ") and "size(B)" in line:
            names = line[1:].split()
        elif names and line.strip() and not line.startswith("#"):
            rows.append(dict(zip(names, line.split())))
    return rows


def plot(records: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for key in dict.fromkeys((r["config"], r["impl"]) for r in records):
        rs = [r for r in records if (r["config"], r["impl"]) == key]
        label = key[1] if key[0] == "-" else f"{key[1]} {key[0]}"
        ax.plot([r["size"] for r in rs], [r["busbw_GBps"] for r in rs], marker="o",
                label=label, linestyle="--" if key[1] in ("native", "membound") else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown for options with a value only: not for on/off flags (whose default
    would read "True" for --no-membound) nor for options without a default."""

    def _get_help_string(self, action):
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Usage errors and --help printed by the launcher's rank 0 only (before MPI exists)."""

    def _print_message(self, message, file=None):
        from .engine.config import launcher_rank

        if launcher_rank() == 0:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m mpidml.bench",
        description="Collective microbenchmarks (OSU / nccl-tests style) of mpidml's own "
                    "collectives against the MPI library's. Run under mpiexec.",
        epilog="Columns: size in bytes, element count, type, impl requested, algo used (auto's "
               "choice), time per call in microseconds, algbw/busbw in GB/s, #wrong (wrong elements "
               "over every timed call's result), xnative = native time in the same configuration (config "
               "priv|win / in|out) / this time, %%mem = memory bound / time.",
        formatter_class=_Formatter)
    p.add_argument("collective", choices=COLLECTIVES)
    p.add_argument("--version", action="version", version=f"mpidml {__version__}")
    p.add_argument("-m", "--message-size", default="4:64M", metavar="MIN:MAX",
                   help="size range in bytes (K/M/G suffixes)")
    p.add_argument("-f", "--factor", type=int, default=2, help="size multiplier between rows")
    p.add_argument("-i", "--iterations", type=int, default=200,
                   help="timed calls per repetition (fewer for large messages: ~256 MiB per repetition)")
    p.add_argument("-x", "--warmup", type=int, default=5, help="untimed calls before each repetition")
    p.add_argument("-r", "--reps", type=int, default=5, help="interleaved repetitions (median reported)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--impl", default=None,
                   help="comma-separated implementations: " +
                        "; ".join(f"{c}: {','.join(v)}" for c, v in _IMPLS.items()) +
                        " (default: " + "; ".join(f"{c}: {v}" for c, v in _DEFAULT_IMPLS.items()) + ")")
    p.add_argument("--sendbuf", choices=["private", "window", "both"], default="private",
                   help="allreduce: where the buffers of auto/shm/hier live: private numpy arrays (what "
                        "training uses), the node's shared window (mpidml's fusion-buffer mode, which no "
                        "training path uses), or both; native/ring/rd always use private buffers")
    p.add_argument("--place", choices=["in", "out", "both"], default="in",
                   help="allreduce in place (what training does; native with MPI.IN_PLACE), out of place, "
                        "or both; the input is refilled / the output zeroed before every call, untimed")
    p.add_argument("--inplace", action="store_const", dest="place", const="in",
                   help="the same as --place in (kept for old command lines)")
    p.add_argument("--all-configs", action="store_true",
                   help="allreduce: every configuration a user can have, i.e. --sendbuf both --place both")
    p.add_argument("--no-membound", dest="membound", action="store_false",
                   help="skip the memory-bound reference row (measured unless this is given)")
    p.add_argument("--json", metavar="FILE", help="write all records (and the cost-model fit) as JSON; - for stdout")
    p.add_argument("--plot", metavar="FILE.png", help="plot busbw vs size per implementation (matplotlib)")
    p.add_argument("--fit", action="store_true",
                   help="fit t = a + b·n per algorithm and print an α-β projection to 1024 ranks")
    return p


_CORRUPT_VAR = "MPIDML_BENCH_CORRUPT"


def _corruptions(text: str, impls: list[str]) -> dict:
    """``IMPL:REP:CALL[,...]`` → {(impl, rep): {call, ...}} (see the module docstring)."""
    out: dict = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in impls or not all(x.isdigit() for x in parts[1:]):
            raise argparse.ArgumentTypeError(f"{_CORRUPT_VAR}={text!r}: expected IMPL:REP:CALL with IMPL "
                                             f"one of {','.join(impls)}, e.g. ring:1:0")
        out.setdefault((parts[0], int(parts[1])), set()).add(int(parts[2]))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check every argument before MPI starts: any error is a usage error (exit
    2, one message from the launcher's rank 0). Adds ``impls``, ``sizes``, ``configs``
    ([(sendbuf, inplace)]), ``corrupt``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for name, least in (("iterations", 1), ("warmup", 0), ("reps", 1)):
            if getattr(args, name) < least:
                raise argparse.ArgumentTypeError(f"--{name} must be >= {least}, got {getattr(args, name)}")
        args.impls = (args.impl or _DEFAULT_IMPLS[args.collective]).split(",")
        bad = [i for i in args.impls if i not in _IMPLS[args.collective]]
        if bad:
            raise argparse.ArgumentTypeError(f"{args.collective} has no implementation {bad}; choose from "
                                             f"{','.join(_IMPLS[args.collective])}")
        args.sizes = size_range(args.message_size, args.factor)
        if args.all_configs:
            args.sendbuf, args.place = "both", "both"
        args.configs = configurations(args.sendbuf, args.place)
        args.corrupt = _corruptions(os.environ.get(_CORRUPT_VAR, ""), args.impls)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return args


def closing_line(records: list[dict]) -> str:
    """What was checked, and no more: the timed calls of the collective rows (membound is
    not a collective and has no result to check)."""
    rows = [r for r in records if r["impl"] != "membound"]
    calls = sum(r["checked_calls"] for r in rows)
    wrong = sum(r["wrong"] for r in rows)
    configs = sorted({r["config"] for r in rows})
    return (f"# checked: every timed call of the {len(rows)} collective rows ({calls} calls, configurations "
            f"{','.join(configs)}), each compared element by element with the exact sum after the call: "
            f"{wrong} wrong element(s); membound rows are not checked (no collective result)")


def main(argv=None) -> int:
    args = parse_args(argv)
    impls, sizes = args.impls, args.sizes
    from mpi4py import MPI

    from .comm.hierarchical import split_nodes
    from .runtime.errors import install_abort_hook

    install_abort_hook()
    comm = MPI.COMM_WORLD.Dup()
    rank = comm.Get_rank()
    layout = split_nodes(comm)
    nodes = layout.num_nodes
    layout.free()
    if nodes > 1 and "shm" in impls:
        impls.remove("shm")
    if args.json and args.json != "-":
        from .runtime.errors import fail_together
        from .runtime.outputs import check_output
        fail_together(comm, "checking the output path", check_output, args.json, "json", "--json")
    dtype = np.dtype(args.dtype).type
    out = sys.stdout if args.json != "-" else sys.stderr

    def log(rec):
        if rank == 0:
            out.write(_row(rec) + "\n")
            out.flush()

    if args.collective == "overlap":
        def log_overlap(r):
            if rank == 0:
                out.write(f"  {r['size']:>10} {r['impl']:>6} compute {r['compute_us']:9.1f} us  "
                          f"allreduce {r['comm_us']:9.1f} us  both {r['both_us']:9.1f} us  "
                          f"overlap {r['overlap']:5.2f}\n")
        if rank == 0:
            out.write(f"# mpidml.bench overlap: {comm.Get_size()} rank(s); iallreduce (avg) while a numba "
                      f"logreg gradient (60000 x 100 float32) runs; overlap 1 = hidden, 0 = none\n")
        recs = [run_overlap(comm, s, i, args.reps, log_overlap) for s in sizes for i in impls]
        if rank == 0 and args.json:
            with (sys.stdout if args.json == "-" else open(args.json, "w")) as fh:
                json.dump({"collective": "overlap", "p": comm.Get_size(), "records": recs}, fh, indent=1)
        from .comm import select
        select.release(comm)
        return 0
    if rank == 0:
        out.write(_header(args.collective, comm.Get_size(), nodes, dtype, args.reps, args.warmup, impls,
                          args.configs) + "\n")
    records = run_bench(comm, args.collective, sizes, impls, dtype, args.iterations, args.warmup,
                        args.reps, args.membound, log, args.configs,
                        args.corrupt if rank == 0 else None)
    model = fit_cost_model(records) if args.fit or args.json else {}
    if rank == 0:
        out.write(closing_line(records) + "\n")
        if args.fit:
            out.write("# alpha-beta PROJECTION (model fitted at this p, not measured): time in us\n")
            out.write(f"# {'impl':>6} {'P':>5} " + " ".join(f"{s:>10}" for s in ("4K", "1M", "64M")) + "\n")
            for impl in ("ring", "rd"):
                for P in (8, 64, 1024):
                    ts = [project(model, impl, P, s) for s in (4 << 10, 1 << 20, 64 << 20)]
                    if ts[0] is not None:
                        out.write(f"  {impl:>6} {P:>5} " + " ".join(f"{t * 1e6:>10.1f}" for t in ts) + "\n")
        if args.json:
            doc = {"collective": args.collective, "p": comm.Get_size(), "nodes": nodes,
                   "argv": sys.argv, "records": records, "cost_model": model}
            if args.json == "-":
                json.dump(doc, sys.stdout, indent=1)
            else:
                with open(args.json, "w") as fh:
                    json.dump(doc, fh, indent=1)
        if args.plot:
            plot(records, args.plot, f"{args.collective}, p={comm.Get_size()}, {np.dtype(dtype).name}")
        if any(r["wrong"] for r in records):
            out.write("# ERROR: some results were wrong\n")
    from .comm import select
    select.release(comm)
    wrong_any = comm.bcast(sum(r["wrong"] for r in records) if rank == 0 else None, root=0)
    return 1 if wrong_any else 0


if __name__ == "__main__":
    sys.exit(main())
