"""``python -m mpidml.train``: the command line of the training engine.

Every rank runs this same program (SPMD). The flags are generated from the
configuration's parts (``engine.config``); the run itself is ``engine.Trainer``.
``TrainConfig`` and ``train(cfg, comm)`` stay importable from here (Python API).
Importing this module, ``--help``, ``--version`` and argument errors import no numeric
stack (no numba, scipy or h5py) and do not initialise MPI.
"""

from __future__ import annotations

import os
import signal
import sys

from .engine.config import TrainConfig, build_parser, config_from_args, parse_args

__all__ = ["TrainConfig", "train", "build_parser", "parse_args", "main"]


def train(cfg: TrainConfig, comm, model=None, hooks=()) -> dict:
    """Collective: run the training job ``cfg`` on ``comm``; every rank returns the same
    summary dict (final objective, test metric, ``params`` …). ``model``: a model
    instance or class of the ``mpidml.Model`` protocol instead of ``cfg.model``."""
    from .engine.trainer import Trainer

    return Trainer(cfg, comm, model=model, hooks=hooks).run()


def main(argv=None) -> int:
    from .runtime.signals import STOP_SIGNALS, StopRequest, take_early

    # First, before the arguments are parsed and MPI starts: a stop signal from here on is a
    # stop request (the run stops at its first step with a checkpoint, exit 3), not a kill.
    stop = take_early() or StopRequest()     # (mpidml/__init__ installed them at import)
    cfg = config_from_args(parse_args(argv))
    from .runtime.errors import EXIT_USAGE, MpidmlError, install_abort_hook

    install_abort_hook()
    from mpi4py import MPI

    from .doctor import check_world
    from .engine.trainer import Trainer

    try:
        check_world(MPI.COMM_WORLD)
    except MpidmlError as exc:
        # Each of srun --mpi=none's tasks is alone in its world: the first task speaks.
        if os.environ.get("SLURM_PROCID", "0") == "0":
            sys.stderr.write(f"mpidml: error: {exc}\n")
        return EXIT_USAGE
    comm = MPI.COMM_WORLD.Dup()  # own communicator: our tags never meet the user's
    # The run's signal handlers stay until it ends; then the signals are ignored, so one
    # that arrives after the run has finished or stopped (during MPI_Finalize, say) cannot
    # kill it: exit 0 or 3 stands. (Python resets its own handlers to the default at
    # interpreter exit, but leaves SIG_IGN alone.)
    trainer = Trainer(cfg, comm, restore_signals=False, stop=stop)
    try:
        trainer.run()
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    if trainer.comm is not comm:    # --on-failure shrink: a rank died; the shrunken one is the run's
        trainer.comm.Free()
    else:
        comm.Free()                 # (a revoked communicator cannot be freed collectively)
    return 0


if __name__ == "__main__":
    sys.exit(main())
