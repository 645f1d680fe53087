"""Stop requests from signals (SIGTERM, SIGUSR1: what Slurm sends before a time limit or
preemption with ``--signal``; SIGINT, a Ctrl-C, and SIGHUP, a closed terminal or a hang-up
sent by a scheduler, are treated the same), agreed on by all ranks.

The handler only sets a flag. The training loop adds the flag to the step's fused
allreduce buffer, so every rank learns at the same step that some rank was asked to
stop, checkpoints, and exits with ``EXIT_STOPPED`` — no extra collective, no rank
stopping alone.
"""

from __future__ import annotations

import signal

__all__ = ["StopRequest", "EXIT_STOPPED", "STOP_SIGNALS", "install_early", "take_early", "signal_name"]

EXIT_STOPPED = 3   # stopped by a signal after writing a checkpoint; resume with --resume
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGHUP)


class StopRequest:
    """Install handlers for ``signals``; ``requested`` becomes the signal number."""

    def __init__(self, signals=STOP_SIGNALS):
        self.requested = 0
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        # a repeated signal keeps the first request: the stop is already under way
        self.requested = self.requested or signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


_early: StopRequest | None = None


def install_early() -> None:
    """Install the stop handlers now, before the CLI imports anything heavy: a signal in
    the first fraction of a second (imports, MPI start-up) then stops the run at its first
    step, with a checkpoint, instead of killing the rank. Called by ``mpidml/__init__``
    only when the process is ``python -m mpidml.train`` (a library import never changes
    signal handlers). What remains is the interpreter's own start-up, ~30 ms, before any
    Python code can run."""
    global _early
    if _early is None:
        _early = StopRequest()


def take_early() -> StopRequest | None:
    """The early handlers (once), for the run to adopt, so no signal between the two is lost."""
    global _early
    got, _early = _early, None
    return got


def signal_name(signum: int) -> str:
    """``15`` -> ``"SIGTERM"`` (the number if it is no known signal)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
