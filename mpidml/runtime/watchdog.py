"""Stall watchdog and peer liveness: a rank that makes no progress, or a peer that stopped
running, ends the job with a message naming it (instead of every rank waiting forever).

**Stalls.** The training loop calls ``beat(phase, step)`` when it enters a phase ("compute",
"allreduce", "checkpoint", …). A phase that cannot beat from inside (a kernel compile, a
shard read, a checkpoint write by rank 0 while the others wait) is entered with an
``allowance``: the limit for that phase is ``max(limit, allowance)``, so a short
``--stall-timeout`` does not kill a healthy start-up, and a stall there still ends the job.
A daemon thread checks once a second; on a stall it writes
``rank R: no progress for T s in <phase> at step S`` and calls
``MPI.COMM_WORLD.Abort``. Every stuck rank reports, so the ranks waiting in
"allreduce" name the ones that never arrived (those report "compute" or nothing).

**Liveness** (``liveness`` seconds, a communicator given). The same thread sends a
heartbeat every second on a private communicator (``Idup`` of the run's: nobody's
``ANY_TAG`` receive can take it): every rank to rank 0 (its beat count, step, phase and
current allowance), rank 0 back to every rank (its own, plus the largest allowance any
rank announced) — 2(p-1) messages a second, O(p). Rank 0 declares a rank dead when no
heartbeat came from it for ``liveness`` seconds, every other rank does so for rank 0; it
prints ``no heartbeat from rank R for T s (its last: <phase> at step S)`` and aborts the
job. This tells a stopped peer (SIGSTOP, a frozen node) from a slow one: a rank waiting
in a collective uses ``max(limit, own allowance, largest allowance of a live rank)``,
so a peer in a long announced phase does not make its waiting partners fire, while a
stopped peer ends the job after ``liveness`` seconds whatever the allowances.

The heartbeat thread needs the GIL. Measured here (``docs/reliability.md``): it keeps
beating through numba compilation, numba cache loads and h5py reads (plain and gzip,
hundreds of MB: h5py releases the GIL) and through mpidml's kernels (all ``nogil``);
a user's numba kernel compiled without ``nogil=True`` holds it for the whole call (a
4 s call gave a 4 s gap), so a single call longer than ``liveness`` is taken for a dead
rank: raise ``--liveness-timeout`` or compile with ``nogil=True``. Liveness needs
``MPI_THREAD_MULTIPLE`` (the thread calls MPI while the main thread does); without it
``liveness_supported`` says why and only the stall watchdog runs.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

__all__ = ["Watchdog", "liveness_supported", "HEARTBEAT_EVERY"]

#: seconds between heartbeats (and between stall checks)
HEARTBEAT_EVERY = 1.0

# one heartbeat: the sender's beat count, step, current allowance (rank 0's reply: the
# largest allowance of any live rank) and phase
_HB = np.dtype([("beats", "<i8"), ("step", "<i8"), ("allowance", "<f8"), ("phase", "S80")])
_TAG = 1     # the private communicator carries nothing else


def liveness_supported() -> str | None:
    """None if heartbeats can run beside the main thread, else why not."""
    from mpi4py import MPI

    level = MPI.Query_thread()
    if level != MPI.THREAD_MULTIPLE:
        names = {MPI.THREAD_SINGLE: "SINGLE", MPI.THREAD_FUNNELED: "FUNNELED", MPI.THREAD_SERIALIZED: "SERIALIZED"}
        return (f"MPI provides MPI_THREAD_{names.get(level, level)}, not MPI_THREAD_MULTIPLE "
                f"(mpi4py.rc.thread_level)")
    return None


class _Liveness:
    """The heartbeat exchange; every method runs in the watchdog thread (``start``: the caller's)."""

    def __init__(self, comm, timeout: float):
        self.timeout = timeout
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.comm, self._dup_req = comm.Idup()      # collective, but nobody waits for it here
        self.ready = False
        self.job_allowance = 0.0
        peers = range(1, self.size) if self.rank == 0 else [0]
        self.peers = list(peers)
        self.last_seen: dict[int, float] = {}
        self.info = {r: np.zeros(1, _HB) for r in self.peers}          # the last heartbeat of each
        self._inbox = {r: np.zeros(1, _HB) for r in self.peers}
        self._recv: dict = {}
        self._send: dict = {}
        self._out = {r: np.zeros(1, _HB) for r in self.peers}

    def tick(self, beats: int, step: int, phase: str, allowance: float) -> str | None:
        """Send and receive; a message if a peer is dead."""
        now = time.monotonic()
        if not self.ready:
            if not self._dup_req.Test():
                return None
            self.ready = True
            for r in self.peers:
                self.last_seen[r] = now
                self._post(r)
        for r in self.peers:
            while self._recv[r].Test():
                self.info[r][:] = self._inbox[r]
                self.last_seen[r] = now
                self._post(r)
        if self.rank == 0:
            live = [float(self.info[r]["allowance"][0]) for r in self.peers]
            self.job_allowance = max([allowance, *live])
        else:
            self.job_allowance = float(self.info[0]["allowance"][0])
        for r in self.peers:
            req = self._send.get(r)
            if req is not None and not req.Test():
                continue        # the previous heartbeat is still in flight: do not pile them up
            out = self._out[r]
            out["beats"], out["step"], out["phase"] = beats, step, phase.encode()[:80]
            out["allowance"] = self.job_allowance if self.rank == 0 else allowance
            self._send[r] = self.comm.Isend([out.view(np.uint8), _mpi_byte()], dest=r, tag=_TAG)
        for r in self.peers:
            quiet = now - self.last_seen[r]
            if quiet > self.timeout:
                last = self.info[r][0]
                seen = (f"its last heartbeat: {last['phase'].decode(errors='replace')} at step {last['step']}"
                        if last["beats"] else "no heartbeat received from it yet")
                return (f"no heartbeat from rank {r} for {quiet:.0f} s ({seen}; liveness limit "
                        f"{self.timeout:g} s): rank {r} is stopped (SIGSTOP?), its node is gone, or it is in "
                        f"a call holding the Python GIL")
        return None

    def _post(self, r: int) -> None:
        self._recv[r] = self.comm.Irecv([self._inbox[r].view(np.uint8), _mpi_byte()], source=r, tag=_TAG)

    def close(self) -> None:
        """Cancel the posted receives (called by the watchdog thread as it ends)."""
        from mpi4py import MPI

        if not self.ready:
            return
        for req in self._recv.values():
            req.Cancel()
        MPI.Request.Waitall(list(self._recv.values()))
        # a heartbeat still in flight to a peer that stopped listening is dropped with the communicator
        self.comm.Free()


def _mpi_byte():
    from mpi4py import MPI

    return MPI.BYTE


class Watchdog:
    """Args:
        limit: the stall limit in seconds (0 = no stall check).
        rank, size: for the messages.
        on_stall: called with the message instead of aborting (tests).
        comm: the run's communicator; with ``liveness`` > 0, heartbeats run on a duplicate.
        liveness: seconds without a peer's heartbeat that make it dead (0 = off).
    """

    def __init__(self, limit: float, rank: int, size: int, on_stall=None, comm=None, liveness: float = 0.0):
        self.limit = float(limit)
        self.rank, self.size = rank, size
        self.phase, self.step = "start-up", -1
        self.beats = 0
        self._last = time.monotonic()
        self._allowance = 0.0
        self._stop = threading.Event()
        self._on_stall = on_stall or self._abort
        self._thread = None
        self.liveness_off: str | None = None      # why peer liveness is not running (None: it is, or p = 1)
        self._live = None
        if liveness > 0 and comm is not None and size > 1:
            self.liveness_off = liveness_supported()
            if self.liveness_off is None:
                self._live = _Liveness(comm, float(liveness))
        elif size > 1:
            self.liveness_off = "--liveness-timeout 0"
        if self.limit > 0 or self._live is not None:
            self._thread = threading.Thread(target=self._watch, name="mpidml-watchdog", daemon=True)
            self._thread.start()

    def beat(self, phase: str, step: int, allowance: float = 0.0) -> None:
        self.phase, self.step = phase, step
        self._allowance = allowance
        self.beats += 1
        self._last = time.monotonic()

    def _period(self) -> float:
        return min(HEARTBEAT_EVERY, self.limit / 4) if self.limit > 0 else HEARTBEAT_EVERY

    def _watch(self) -> None:
        try:
            while not self._stop.wait(self._period()):
                if self._live is not None:
                    dead = self._live.tick(self.beats, self.step, self.phase, self._allowance)
                    if dead:
                        self._on_stall(f"mpidml: rank {self.rank} of {self.size}: {dead}; aborting the job\n")
                        return
                if self.limit <= 0:
                    continue
                idle = time.monotonic() - self._last
                peers = self._live.job_allowance if self._live is not None else 0.0
                limit = max(self.limit, self._allowance, peers)
                if idle > limit:
                    wait = f", a peer's announced allowance {peers:g} s" if peers > self._allowance else ""
                    self._on_stall(f"mpidml: rank {self.rank} of {self.size}: no progress for {idle:.0f} s "
                                   f"in {self.phase} at step {self.step} (stall limit {limit:g} s{wait}); "
                                   f"aborting the job\n")
                    return
        finally:
            if self._live is not None and self._stop.is_set():
                self._live.close()

    def _abort(self, message: str) -> None:
        from .errors import abort_world

        sys.stderr.write(message)
        abort_world(1)

    def stop(self) -> None:
        """End the thread (and the heartbeats: they stop before the caller's next MPI call)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5 * HEARTBEAT_EVERY)
