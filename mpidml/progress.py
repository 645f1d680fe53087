"""Rank-0 progress inside an epoch: ``--progress auto|bar|plain|none``.

``bar`` draws a tqdm bar on rank 0's stderr (steps, running loss, samples/s). ``plain``
prints a line every ``every`` seconds — what a batch job's log wants. ``auto`` picks
``bar`` when rank 0's stderr is a terminal (under mpirun stdout is a pipe even then)
and ``plain`` otherwise. Other ranks never print. The per-epoch summary lines are
separate (``-q`` turns those off).
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "MODES"]

MODES = ("auto", "bar", "plain", "none")


class Progress:
    def __init__(self, mode: str, rank: int, epochs: int, steps_per_epoch: int, rows_per_epoch: int,
                 every: float = 10.0, stream=None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "plain"
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
