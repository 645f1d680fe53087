"""mpidml: distributed training on CPU clusters with MPI.

Each rank of an SPMD job (``mpirun -n 8 python -m mpidml.train``) reads its own
row range of an HDF5 data set, computes gradients with numba kernels and moves
them with mpidml's own collectives (``mpidml.comm``).

The public API re-exported here:

    mpidml.fit(model, data=..., algo=..., **options)   train any Model with any algorithm
    mpidml.Model                                       the model protocol (subclass it)
    mpidml.register, mpidml.Algorithm                  add an algorithm (one module)
    mpidml.TrainConfig, mpidml.Hook                    the run's settings; hooks around the loop

and the pieces for a user's own SPMD program::

    from mpidml import ring_allreduce, shard_rows, load_shard, LogReg, SGD
"""

import sys as _sys

__version__ = "0.1.0"


def _running_the_cli(argv) -> bool:
    return any(a == "-m" and b == "mpidml.train" for a, b in zip(argv, argv[1:]))


if _running_the_cli(getattr(_sys, "orig_argv", ())):   # `python -m mpidml.train`: catch stop signals from now on
    from .runtime.signals import install_early as _install_early
    _install_early()

__all__ = [
    "__version__",
    "fit",
    "FitResult",
    "Model",
    "register",
    "Algorithm",
    "TrainConfig",
    "Hook",
    "ring_allreduce",
    "ring_reduce_scatter",
    "ring_allgather",
    "shard_rows",
    "load_shard",
    "LogReg",
    "Softmax",
    "LeastSquares",
    "MLP",
    "SGD",
    "Adam",
]


def __getattr__(name):
    # Lazy re-exports: `import mpidml` must not import mpi4py (MPI_Init) or numba.
    if name in ("ring_allreduce", "ring_reduce_scatter", "ring_allgather"):
        from .comm import ring
        return getattr(ring, name)
    if name == "shard_rows":
        from .data.partition import shard_rows
        return shard_rows
    if name == "load_shard":
        from .data.loader import load_shard
        return load_shard
    if name in ("LogReg", "Softmax", "LeastSquares", "MLP"):
        from . import models
        return getattr(models, name)
    if name in ("fit", "FitResult"):
        from . import api
        return getattr(api, name)
    if name == "Model":
        from .models import Model
        return Model
    if name in ("register", "Algorithm"):
        from . import algos
        return getattr(algos, name)
    if name == "TrainConfig":
        from .engine.config import TrainConfig
        return TrainConfig
    if name == "Hook":
        from .engine.hooks import Hook
        return Hook
    if name in ("SGD", "Adam"):
        from . import optim
        return getattr(optim, name)
    raise AttributeError(f"module 'mpidml' has no attribute {name!r}")
