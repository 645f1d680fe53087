"""Collective debug mode: every rank checks that all ranks entered the *same* collective.

The mode is an object, ``DebugMode``: each ``Collectives`` (comm/collectives.py) owns
one (``Collectives(comm, debug=True)``; the training CLI's ``--debug-collectives``), with
its own on/off switch and sequence numbers, so two instances in one process never see
each other's setting. The module-level functions (``ring_allreduce(comm, buf)`` …) use
``default``, switched by ``MPIDML_DEBUG_COLLECTIVES=1`` in the environment (read at
import) or ``enable()`` / ``disable()`` (``enabled()`` tells); every entry point takes
``debug=`` to use another mode. Every rank must enable it: the check is itself a
collective.

When enabled, each mpidml collective entry point (``select.allreduce`` /
``native_allreduce`` / ``bcast``, ``ring_allreduce`` / ``ring_reduce_scatter`` /
``ring_allgather``, ``rd_allreduce``, ``hierarchical_allreduce``,
``ShmAllreduce.allreduce``, ``tree_bcast`` / ``chain_bcast`` / ``shm_bcast``,
``codecs.allgather_sum``, ``gossip.neighbor_exchange`` / ``shift_exchange``) first
exchanges a small signature with a native pickled ``comm.allgather``:

    (sequence number of checked calls on this communicator, collective name, element
     count, dtype, op, root, impl, caller's file:line outside mpidml/comm)

and if the ranks disagree, *every* rank raises the same ``CollectiveMismatch`` (a
``runtime.errors.CollectiveError``, exit status 1 under the CLI hook) before any data
moves, naming the first field that differs and which ranks called what::

    collective #17 mismatch (name differs): rank 0 called ring_allreduce(count=1030,
    float32, op=sum) at train.py:412; rank 2 called bcast(count=8, float64, root=0,
    impl=native) at checkpoint.py:88

The caller's location is reported, never compared (ranks may call from different lines).
Nested calls (``select.allreduce`` → ``ring_allreduce``, ``hierarchical_allreduce`` →
the leaders' ring) are checked once, at the outermost entry (a per-thread depth).

Point-to-point exchanges are checked only for what they need to be well-formed, not
for equal buffers: ``neighbor_exchange`` — every neighbour lists me back, and what I
send to j has the size and dtype of j's receive buffer for me; ``shift_exchange`` —
the rank I receive from sends to me, with my receive buffer's size and dtype.

Why a plain allgather does not hang when ranks called *different* collectives: the
signature exchange is the first thing every checked entry point does, so as long as
every rank is inside *some* checked collective they all meet in it. Limitations: a rank
inside an unchecked MPI call on the same communicator (mpi4py's own ``comm.allgather``
e.g. in ``fail_together``) is reported as "not in an mpidml collective" when the two
pickled allgathers happen to meet, and a buffer-mode MPI call can make MPI itself
abort; a rank that never enters any collective (stuck computing, or exited) leaves the
others waiting in the signature exchange, which the stall watchdog
(``runtime/watchdog.py``, on by default in training) reports and aborts. A checked
call on a background thread (``nonblocking.iallreduce``) reports the thread's frame as
its location. Cost when disabled: one module-attribute test per entry point (~30 ns);
when enabled: one small pickled allgather per call (docs/reliability.md).
"""

from __future__ import annotations

import os
import sys
import threading
import types

from ..runtime.errors import EXIT_FAILURE, CollectiveError, format_ranks

__all__ = ["DebugMode", "default", "mode", "enable", "disable", "enabled", "sequence", "total", "reset", "checked",
           "outermost", "CollectiveMismatch"]


def env_enabled() -> bool:
    """``MPIDML_DEBUG_COLLECTIVES`` asks for debug mode."""
    return os.environ.get("MPIDML_DEBUG_COLLECTIVES", "").strip() not in ("", "0", "false", "no", "off")

_MAGIC = "mpidml-collective-signature"
_COMM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_SKIP_FILES = (_COMM_DIR, str(threading.__file__),
               os.path.dirname(os.path.abspath(str(__import__("contextlib").__file__))) + os.sep + "contextlib.py")
# seq last: a rank that skipped a call usually shows as a different name or count first
_FIELDS = ("name", "count", "dtype", "op", "root", "impl", "seq")
_tls = threading.local()


class DebugMode:
    """On/off switch and per-communicator sequence numbers of checked collectives.

    Entry points test ``mode.on and outermost()`` (one attribute read when off) and
    then run their body inside ``mode.checked(comm, name, buf, ...)``."""

    __slots__ = ("on", "_seq", "_lock")

    def __init__(self, on: bool | None = None):
        self.on = env_enabled() if on is None else bool(on)
        self._seq: dict[int, int] = {}
        self._lock = threading.Lock()

    def enable(self) -> None:
        """Check every following collective of this mode across ranks (call on every rank)."""
        self.on = True

    def disable(self) -> None:
        self.on = False

    def enabled(self) -> bool:
        return self.on

    def next_seq(self, comm) -> int:
        key = comm.py2f()
        with self._lock:
            seq = self._seq[key] = self._seq.get(key, 0) + 1
        return seq

    def sequence(self, comm) -> int:
        """How many checked collectives this rank has entered on ``comm``."""
        return self._seq.get(comm.py2f(), 0)

    def total(self) -> int:
        """How many checked collectives this rank has entered, on every communicator."""
        with self._lock:
            return sum(self._seq.values())

    def reset(self, comm=None) -> None:
        """Restart the sequence numbers of ``comm`` (default: of every communicator), e.g.
        in a program that caught a mismatch and goes on. Every rank must call it."""
        with self._lock:
            if comm is None:
                self._seq.clear()
            else:
                self._seq.pop(comm.py2f(), None)

    def checked(self, comm, name: str, buf=None, **kw) -> checked:
        return checked(comm, name, buf, mode=self, **kw)


#: the mode of the module-level functions (``ring_allreduce(comm, buf)`` without ``debug=``)
default = DebugMode()


def mode(debug: DebugMode | None) -> DebugMode:
    """``debug`` itself, or ``default`` for None (what every entry point's ``debug=`` means)."""
    return default if debug is None else debug


def enable() -> None:
    """Switch the default mode on (call on every rank)."""
    default.enable()


def disable() -> None:
    default.disable()


def enabled() -> bool:
    return default.on


def sequence(comm) -> int:
    return default.sequence(comm)


def total() -> int:
    return default.total()


def reset(comm=None) -> None:
    default.reset(comm)


def __getattr__(name):
    if name == "on":          # ``debug.on``: the default mode's switch (read-only here)
        return default.on
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def outermost() -> bool:
    """True unless this thread is already inside a checked collective."""
    return getattr(_tls, "depth", 0) == 0


class CollectiveMismatch(CollectiveError):
    """Ranks entered different collectives (raised identically on every rank)."""

    def __init__(self, seq, field: str, calls: list[tuple[int, str]], detail: str = ""):
        super().__init__(f"collective #{seq}", calls, exit_code=EXIT_FAILURE)
        self.seq, self.field = seq, field
        groups: dict[str, list[int]] = {}
        for r, call in calls:
            groups.setdefault(call, []).append(r)
        head = f"collective #{seq} mismatch ({detail or field + ' differs'}): "
        self.args = (head + "; ".join(f"{format_ranks(rs)} {call}" for call, rs in groups.items()),)


def _caller() -> str:
    f: types.FrameType | None = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_SKIP_FILES):
        f = f.f_back
    if f is None:
        return "(a background thread)"
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"


def _buf_info(buf):
    size, dtype = getattr(buf, "size", None), getattr(buf, "dtype", None)
    return (int(size) if size is not None else None), (str(dtype) if dtype is not None else type(buf).__name__)


class checked:
    """Context manager around the body of a collective entry point::

        dbg = _debug.mode(debug)
        if dbg.on and _debug.outermost():
            with dbg.checked(comm, "ring_allreduce", buf, op=op):
                return ring_allreduce(comm, buf, op, counters=counters, debug=dbg)

    On entry: exchanges the signature (raises ``CollectiveMismatch`` on every rank if
    the ranks disagree); inside: nested entry points skip their own check.
    ``p2p`` (point-to-point exchanges) replaces the count/dtype comparison by a pairing
    check: ``{"to": [ranks], "send": buffer, "recv": [buffers]}`` (neighbor exchange)
    or ``{"shift": s, "send": buffer, "recv": buffer}`` (shift exchange).
    """

    __slots__ = ("comm", "sig", "mode")

    def __init__(self, comm, name: str, buf=None, *, op=None, root=None, impl=None, p2p=None,
                 mode: DebugMode | None = None):
        self.comm = comm
        self.mode = default if mode is None else mode
        count, dtype = _buf_info(buf) if p2p is None else (None, None)
        if p2p is not None:
            p2p = dict(p2p)
            p2p["send"] = _buf_info(p2p["send"])
            p2p["recv"] = ([_buf_info(b) for b in p2p["recv"]] if "to" in p2p else _buf_info(p2p["recv"]))
            if "to" in p2p:
                p2p["to"] = [int(j) for j in p2p["to"]]
            else:
                p2p["shift"] = int(p2p["shift"])
        self.sig = {"magic": _MAGIC, "seq": None, "name": name, "count": count, "dtype": dtype,
                    "op": op, "root": root, "impl": impl, "p2p": p2p, "where": _caller()}

    def __enter__(self):
        comm = self.comm
        if comm.Get_size() > 1:
            self.sig["seq"] = self.mode.next_seq(comm)
            mismatch = compare(comm.allgather(self.sig))
            if mismatch is not None:
                raise mismatch
        _tls.depth = getattr(_tls, "depth", 0) + 1
        return self

    def __exit__(self, *exc):
        _tls.depth -= 1
        return False


def describe(sig) -> str:
    """``called ring_allreduce(count=1030, float32, op=sum) at train.py:412``."""
    if not (isinstance(sig, dict) and sig.get("magic") == _MAGIC):
        return f"is not in an mpidml collective (it entered another MPI collective; sent {type(sig).__name__})"
    p2p = sig["p2p"]
    if p2p is None:
        args = [f"count={sig['count']}", f"{sig['dtype']}"]
        args += [f"{k}={sig[k]}" for k in ("op", "root", "impl") if sig[k] is not None]
    elif "to" in p2p:
        (sc, sd), recv = p2p["send"], p2p["recv"]
        args = [f"send {sc} x {sd} to {p2p['to']}", "recv " + (", ".join(f"{c} x {d}" for c, d in recv) or "nothing")]
    else:
        (sc, sd), (rc, rd) = p2p["send"], p2p["recv"]
        args = [f"shift={p2p['shift']}", f"send {sc} x {sd}", f"recv {rc} x {rd}"]
    return f"called {sig['name']}({', '.join(args)}) at {sig['where']}"


def compare(sigs: list) -> CollectiveMismatch | None:
    """The mismatch among the ranks' signatures (every rank computes the same one), or None."""
    calls = [(r, describe(s)) for r, s in enumerate(sigs)]
    strangers = [r for r, s in enumerate(sigs) if not (isinstance(s, dict) and s.get("magic") == _MAGIC)]
    seq0 = next((s["seq"] for s in sigs if isinstance(s, dict) and s.get("magic") == _MAGIC), "?")
    if strangers:
        return CollectiveMismatch(seq0, "collective", calls,
                                  f"{format_ranks(strangers)} not in an mpidml collective")
    for field in _FIELDS:
        values = [s[field] for s in sigs]
        if any(v != values[0] for v in values):
            if field == "seq":
                seqs = ", ".join(f"{format_ranks(rs)} #{v}" for v, rs in _group(values).items())
                return CollectiveMismatch(seq0, "seq", calls, f"sequence number differs: {seqs}")
            return CollectiveMismatch(seq0, field, calls)
    if sigs[0]["p2p"] is not None:
        problem = _pairing_problem(sigs)
        if problem is not None:
            field, detail = problem
            return CollectiveMismatch(seq0, field, calls, f"{field}: {detail}")
    return None


def _group(values) -> dict:
    out: dict = {}
    for r, v in enumerate(values):
        out.setdefault(v, []).append(r)
    return out


def _pairing_problem(sigs) -> tuple[str, str] | None:
    """First (in rank order) point-to-point pairing that cannot complete as posted."""
    p = len(sigs)
    for r, s in enumerate(sigs):
        q = s["p2p"]
        if "to" in q:
            for j in q["to"]:
                if not 0 <= j < p or j == r:
                    return "neighbors", f"rank {r} lists neighbour {j}"
                peer = sigs[j]["p2p"]
                if r not in peer["to"]:
                    return "neighbors", f"rank {r} exchanges with rank {j}, which does not list rank {r}"
                got = peer["recv"][peer["to"].index(r)]
                if tuple(got) != tuple(q["send"]):
                    return "count/dtype", (f"rank {r} sends {q['send'][0]} x {q['send'][1]} to rank {j}, "
                                           f"which receives {got[0]} x {got[1]} from it")
        else:
            src = (r - q["shift"]) % p
            peer = sigs[src]["p2p"]
            if (src + peer["shift"]) % p != r:
                return "shift", (f"rank {r} (shift {q['shift']}) receives from rank {src}, which sends to "
                                 f"rank {(src + peer['shift']) % p} (shift {peer['shift']})")
            if tuple(peer["send"]) != tuple(q["recv"]):
                return "count/dtype", (f"rank {src} sends {peer['send'][0]} x {peer['send'][1]} to rank {r}, "
                                       f"which receives {q['recv'][0]} x {q['recv'][1]}")
    return None
