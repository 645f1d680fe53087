"""``python -m mpidml.doctor``: preflight of an MPI job (also run at the start of training).

Prints the MPI library and version, whether a run can survive a dead rank (failure
mitigation: Open MPI with ULFM, ``--on-failure shrink``), world size, nodes and ranks per node, threads per
rank, the launcher in use, and whether data paths are readable on every rank; and it
refuses a world that is smaller than what the launcher started — the silent failure
of ``srun --mpi=none`` (or a PMI mismatch), where each of N tasks runs alone in a
world of size 1 and would train N independent models.

Expected size, in order: ``--expect-size``; ``PMI_SIZE``, which the process manager
gives every rank it starts (hydra's ``mpiexec`` and ``srun --mpi=pmi2`` both do);
``SLURM_STEP_NUM_TASKS`` when Slurm started tasks without PMI (``srun --mpi=none``;
under ``mpiexec`` inside a batch job the step's tasks are hydra's proxies, fewer than
the ranks); otherwise unknown (no check).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from . import __version__
from .runtime.errors import EXIT_USAGE, MpidmlError, format_ranks
from .runtime.threads import node_ranks

__all__ = ["check_world", "preflight", "expected_size", "main"]


def expected_size(explicit: int | None = None) -> tuple[int | None, str]:
    """(expected world size or None, where that number comes from)."""
    if explicit:
        return explicit, "--expect-size"
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value), name
    return None, "unknown"


def check_world(comm, expect: int | None = None) -> None:
    """Raise ``MpidmlError`` on a world smaller than the launcher started (or than
    ``expect``). Purely local: in the failure case each process is alone anyway."""
    size = comm.Get_size()
    want, source = expected_size(expect)
    if want is None:
        return
    if size != want:
        hint = ("the tasks were not connected into one MPI job: launch with "
                "`srun --mpi=pmi2` (or `mpiexec -n N` inside the allocation), not `srun --mpi=none`"
                if size == 1 else "the MPI library and the launcher disagree (is mpi4py built "
                "against the MPI whose launcher you use?)" if source in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
                else "check the -n of your launcher")
        raise MpidmlError(f"MPI world size is {size} but {source} says {want}: {hint}")


def _threads(per_node: int) -> str:
    from .runtime.threads import decide_threads, usable_cores

    numba = os.environ.get("NUMBA_NUM_THREADS", "default")
    cpt = os.environ.get("SLURM_CPUS_PER_TASK")
    return (f"training with --threads auto: {decide_threads(usable_cores(), per_node).describe()}; "
            f"NUMBA_NUM_THREADS {numba}" + (f", SLURM_CPUS_PER_TASK={cpt}" if cpt else ""))


def _launcher() -> str:
    env = os.environ
    if env.get("PMI_HOSTNAME"):   # hydra sets it for every rank it starts
        return "mpiexec (hydra)" + (f" inside Slurm job {env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else "")
    if env.get("OMPI_COMM_WORLD_SIZE"):   # Open MPI's mpiexec (PRRTE) sets it for every rank
        return "mpiexec (Open MPI)" + (f" inside Slurm job {env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else "")
    if env.get("PMI_SIZE") and env.get("SLURM_MPI_TYPE"):
        return f"srun --mpi={env['SLURM_MPI_TYPE']} (Slurm job {env.get('SLURM_JOB_ID', '?')})"
    if env.get("SLURM_STEP_NUM_TASKS"):
        return "srun without PMI (--mpi=none?)"
    return "none (singleton)"


def preflight(comm, expect: int | None = None, paths: tuple[str, ...] = ()) -> dict:
    """Collective: gather the facts above; raises ``MpidmlError`` on a bad world or an
    unreadable path (after every rank has checked, so all ranks raise together)."""
    import mpi4py
    from mpi4py import MPI

    from .runtime.ulfm import failure_mitigation, ft_build

    check_world(comm, expect)
    size = comm.Get_size()
    per_node = node_ranks(comm)
    hosts = comm.allgather(socket.gethostname())
    readable = {p: comm.allgather(os.access(p, os.R_OK)) for p in paths}
    report = {
        "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
        "mpi_standard": "{}.{}".format(*MPI.Get_version()),
        "mpi4py": mpi4py.__version__,
        "world_size": size,
        "expected_size": expected_size(expect)[0],
        "expected_from": expected_size(expect)[1],
        "hosts": sorted(set(hosts)),
        "ranks_per_node": per_node,
        "threads": _threads(per_node),
        "launcher": _launcher(),
        "paths": {p: all(ok) for p, ok in readable.items()},
        "failure_mitigation": _mitigation(failure_mitigation(), ft_build() if comm.Get_rank() == 0 else None),
    }
    bad = {p: [r for r, ok in enumerate(oks) if not ok] for p, oks in readable.items()}
    bad = {p: rs for p, rs in bad.items() if rs}
    if bad:
        lines = [f"{p}: not readable on {format_ranks(rs)} "
                 f"(host {', '.join(sorted({hosts[r] for r in rs}))})" for p, rs in bad.items()]
        raise MpidmlError("data path check failed:\n  " + "\n  ".join(lines))
    return report


def _mitigation(ft, build: bool | None) -> str:
    """One line: can a run survive a dead rank (--on-failure shrink), and why (not)."""
    if ft.available:
        return f"available: {ft.reason}; --on-failure shrink works"
    extra = " (this Open MPI build has ULFM: ompi_info says FT MPI support: yes)" if build else ""
    return f"not available: {ft.reason}{extra}; a dead rank ends the job (--on-failure abort)"


def format_report(r: dict) -> str:
    exp = f" (expected {r['expected_size']} from {r['expected_from']})" if r["expected_size"] else ""
    lines = [
        "mpidml doctor",
        f"  MPI library     {r['mpi_library']} (MPI {r['mpi_standard']}, mpi4py {r['mpi4py']})",
        f"  world size      {r['world_size']}{exp}",
        f"  nodes           {len(r['hosts'])}: {', '.join(r['hosts'])}; ranks per node {r['ranks_per_node']}",
        f"  threads/rank    {r['threads']}",
        f"  launcher        {r['launcher']}",
        f"  dead rank       {r['failure_mitigation']}",
    ]
    lines += [f"  data            {p}: readable on every rank" for p in r["paths"]]
    lines.append("  status          OK")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mpidml.doctor",
        description="Preflight for an MPI job: MPI library, world size vs what the launcher "
                    "started, ranks per node, threads, data readable on every rank. Run it with "
                    "the launcher you will train with, e.g. `srun --mpi=pmi2 python -m mpidml.doctor`.",
        epilog="Exit status 0 OK; 2 a problem was found (message says what and where).")
    ap.add_argument("--version", action="version", version=f"mpidml {__version__}")
    ap.add_argument("--expect-size", type=int, help="the world size this job must have")
    ap.add_argument("--data", action="append", default=[], metavar="PATH",
                    help="a path that every rank must be able to read (repeatable)")
    args = ap.parse_args(argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        report = preflight(comm, args.expect_size, tuple(args.data))
    except MpidmlError as exc:
        # In a size-1-world failure every task is rank 0 of its own world: only the
        # first Slurm task speaks, the others fail quietly with the same status.
        if os.environ.get("SLURM_PROCID", "0") == "0" and comm.Get_rank() == 0:
            sys.stderr.write(f"mpidml doctor: error: {exc}\n")
        return EXIT_USAGE
    if comm.Get_rank() == 0:
        print(format_report(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
