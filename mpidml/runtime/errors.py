"""Errors that end the whole job, never a hang.

Two mechanisms:

* ``fail_together(comm, fn)`` — for phases every rank runs (argument checks, opening
  files, loading shards): each rank runs ``fn``; then all ranks agree (one small
  control-plane allgather) and, if any failed, *every* rank raises the same
  ``CollectiveError`` naming each failed rank and its message. The CLI then exits
  with status 2 on all ranks and rank 0 prints the message once.
* ``install_abort_hook()`` — for anything else (an exception on one rank while the
  others wait in a collective): the exception is printed with the rank number and
  ``MPI.COMM_WORLD.Abort`` ends every rank at once with a nonzero status.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

__all__ = ["MpidmlError", "CollectiveError", "abort_world", "fail_together", "install_abort_hook",
           "EXIT_USAGE", "EXIT_FAILURE", "EXIT_NUMERIC", "format_ranks"]

EXIT_FAILURE = 1   # unexpected failure on some rank (job aborted)
EXIT_USAGE = 2     # bad input or configuration, detected on all ranks together
# 3 = EXIT_STOPPED (runtime/signals.py): stopped by SIGTERM/SIGUSR1 after a checkpoint
EXIT_NUMERIC = 4   # the loss or gradient became NaN/inf (training stopped on every rank)


class MpidmlError(Exception):
    """A user-facing error (bad input, missing file, …): printed without a traceback."""


class CollectiveError(MpidmlError):
    """Raised identically on every rank when some rank failed a ``fail_together`` phase."""

    def __init__(self, what: str, failures: list[tuple[int, str]], exit_code: int = EXIT_USAGE):
        self.what = what
        self.failures = failures
        self.exit_code = exit_code
        by_message: dict[str, list[int]] = {}
        for r, msg in failures:
            by_message.setdefault(msg, []).append(r)
        lines = [f"{what} failed on {len(failures)} rank(s):"]
        lines += [f"  {format_ranks(ranks)}: {msg}" for msg, ranks in by_message.items()]
        super().__init__("\n".join(lines))


def format_ranks(ranks: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"ranks 0-2,5"``; ``[3]`` → ``"rank 3"`` (sorted input)."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    spans, start = [], ranks[0]
    for prev, cur in zip(ranks, ranks[1:] + [None]):
        if cur is None or cur != prev + 1:  # a run of consecutive ranks ends at prev
            spans.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return "ranks " + ",".join(spans)


def fail_together(comm, what: str, fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` on every rank; if it raises on any rank, raise the
    same ``CollectiveError`` on all ranks. Returns ``fn``'s result otherwise.

    Every rank of ``comm`` must call this (it is collective).
    """
    result, err = None, None
    try:
        result = fn(*args, **kwargs)
    except MpidmlError as exc:
        err = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to every rank, then re-raised
        err = f"{type(exc).__name__}: {exc}"
    errors = comm.allgather(err)
    failures = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failures:
        raise CollectiveError(what, failures)
    return result


def install_abort_hook() -> None:
    """Make an uncaught exception on any rank abort all ranks with a message naming it.

    A ``CollectiveError`` (raised on every rank together) exits with ``EXIT_USAGE``
    without an abort: rank 0 prints it once.
    """
    def hook(exc_type, exc, tb):
        from mpi4py import MPI

        world = MPI.COMM_WORLD
        rank, size = world.Get_rank(), world.Get_size()
        if isinstance(exc, CollectiveError):
            if rank == 0:
                sys.stderr.write(f"mpidml: error: {exc}\n")
                sys.stderr.flush()
            # Every rank raised it together. Nobody exits before rank 0 has written: Hydra
            # tears the job down at the first nonzero exit and could drop the message
            # (seen under load: exit 2, empty stderr). Bounded, in case a rank never comes.
            _bounded_barrier(world, timeout=5.0)
            if size > 1:
                time.sleep(0.2)   # let the launcher forward rank 0's line
            os._exit(exc.exit_code)
        if isinstance(exc, MpidmlError):
            detail = str(exc) + "\n"
        else:
            detail = "".join(traceback.format_exception(exc_type, exc, tb))
        # One write, so lines from several ranks do not interleave.
        sys.stderr.write(f"mpidml: rank {rank} of {size} failed: {exc_type.__name__}: {exc}\n"
                         f"{detail}mpidml: aborting all {size} ranks\n")
        abort_world(EXIT_FAILURE)

    sys.excepthook = hook


def _bounded_barrier(comm, timeout: float) -> bool:
    """Barrier that gives up after ``timeout`` seconds (True if everyone arrived)."""
    if comm.Get_size() == 1:
        return True
    from .poll import Backoff, poll_until

    req = comm.Ibarrier()
    return poll_until(req.Test, Backoff(nap=0.001), timeout=timeout)


def abort_world(code: int = EXIT_FAILURE, drain: float = 0.3) -> None:
    """End every rank now, after what this rank wrote to stderr has had ``drain`` seconds
    to reach the launcher: Hydra kills the other processes and stops forwarding as soon as
    one rank calls ``MPI_Abort``, and a message still in the pipe would be lost."""
    from mpi4py import MPI

    sys.stderr.flush()
    if MPI.COMM_WORLD.Get_size() > 1:
        time.sleep(drain)
        MPI.COMM_WORLD.Abort(code)
    os._exit(code)
