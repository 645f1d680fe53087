"""Rank-0 progress inside an epoch: ``--progress auto|bar|plain|none``.

``bar`` draws a tqdm bar on rank 0's stderr (steps, running loss, samples/s). ``plain``
prints a line every ``every`` seconds — what a batch job's log wants. ``auto`` picks
``bar`` when whoever shows rank 0's stderr is a terminal and ``plain`` otherwise. Other
ranks never print. The per-epoch summary lines are separate (``-q`` turns those off).

Under MPICH's ``mpiexec`` (Hydra) a rank's stderr is a pipe to the launcher and the rank
has no controlling terminal (Hydra calls ``setsid``), so ``isatty()`` is false even when
the user watches a terminal. ``auto`` therefore also looks up the rank's ancestors
(Linux ``/proc``, at most 4 levels): if a launcher (``mpiexec``, ``mpirun``,
``mpiexec.hydra``, ``srun``) is found and *its* stderr is a terminal, the bar is drawn;
Hydra forwards the bytes, carriage returns included. Under ``sbatch`` the launcher's
stderr is the job's log file, so batch jobs get plain lines.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Progress", "MODES", "launcher_on_terminal"]

MODES = ("auto", "bar", "plain", "none")
_LAUNCHERS = ("mpiexec", "mpirun", "mpiexec.hydra", "srun", "orterun", "prterun")


def _is_terminal_path(path: str) -> bool:
    return path.startswith("/dev/pts/") or path.startswith("/dev/tty")


def launcher_on_terminal(pid: int | None = None, levels: int = 4, proc: str = "/proc") -> bool:
    """Whether the nearest launcher among this process's ancestors writes its stderr to a
    terminal. False when there is no ``/proc``, no launcher within ``levels``, or the
    launcher's stderr is a file or pipe (a batch job)."""
    pid = os.getpid() if pid is None else pid
    try:
        for _ in range(levels):
            with open(f"{proc}/{pid}/stat") as fh:
                stat = fh.read()
            pid = int(stat[stat.rindex(")") + 2:].split()[1])     # field 4: ppid (comm may hold spaces)
            if pid <= 1:
                return False
            with open(f"{proc}/{pid}/comm") as fh:
                name = fh.read().strip()
            if name in _LAUNCHERS or name.startswith("mpiexec"):
                return _is_terminal_path(os.readlink(f"{proc}/{pid}/fd/2"))
    except (OSError, ValueError, IndexError):
        return False
    return False


class Progress:
    def __init__(self, mode: str, rank: int, epochs: int, steps_per_epoch: int, rows_per_epoch: int,
                 every: float = 10.0, stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto" and rank == 0:
            mode = "bar" if self.stream.isatty() or launcher_on_terminal() else "plain"
        self.mode = mode if rank == 0 else "none"
        self.epochs, self.steps = epochs, steps_per_epoch
        self.rows = rows_per_epoch
        self.every = every
        self._bar = None

    def start_epoch(self, epoch: int, first_step: int = 0) -> None:
        self.epoch, self.t0, self.last = epoch, time.perf_counter(), time.perf_counter()
        self.loss_sum, self.count, self.first = 0.0, 0.0, first_step
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.steps, initial=first_step, desc=f"epoch {epoch}/{self.epochs}",
                             unit="step", file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, step_in_epoch: int, loss_sum: float, count: float) -> None:
        if self.mode == "none":
            return
        self.loss_sum += loss_sum
        self.count += count
        now = time.perf_counter()
        if self.mode == "bar":
            self._bar.update(1)
            if now - self.last > 0.5:
                self._bar.set_postfix(loss=f"{self.loss_sum / max(self.count, 1):.4f}", refresh=False)
                self.last = now
        elif now - self.last >= self.every:
            done = step_in_epoch + 1
            rate = self.rows * (done - self.first) / self.steps / max(now - self.t0, 1e-9)
            self.stream.write(f"  epoch {self.epoch}/{self.epochs}  step {done}/{self.steps} "
                              f"({100 * done / self.steps:.0f}%)  loss {self.loss_sum / max(self.count, 1):.6f}"
                              f"  {rate:,.0f} samples/s\n")
            self.stream.flush()
            self.last = now

    def end_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
