"""``mpidml.fit``: train any model of the ``mpidml.Model`` protocol with any registered
algorithm, from Python, in ~5 lines.

Example (every rank runs it: ``mpiexec -n 4 python my_job.py``)::

    import mpidml

    class Poisson(mpidml.Model):          # your own loss, see mpidml.Model
        ...

    result = mpidml.fit(Poisson, data="counts.h5", algo="local_sgd", tau=8, epochs=5)
    print(result.summary["objective"], result.params)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["fit", "FitResult"]


@dataclass
class FitResult:
    """What ``fit`` returns on every rank."""

    model: object          # the model object that was trained (built from the data if a class or name was given)
    params: np.ndarray     # the trained consensus parameters (the same bits on every rank)
    summary: dict          # the run's summary record (objective, metrics, bytes, timings, ...)


def fit(model=None, data: str | None = None, algo: str = "sync", *, comm=None, hooks=(), **options) -> FitResult:
    """Collective: train ``model`` on ``data`` with algorithm ``algo``; same result on every rank.

    Args:
        model: a built-in name (``"logreg"``, ``"softmax"``, ``"lsq"``, ``"mlp"``), a class
            of the ``mpidml.Model`` protocol (built for the data through its ``build``
            classmethod), or a model instance; None: ``options["model"]`` or logreg.
        data: the training set (HDF5 file, directory of shards or glob); None: the
            embedded synthetic set.
        algo: an ``--algo`` name (``mpidml.algos.algorithm_names()``), a registered user
            algorithm, or ``"package.module:ClassName"``.
        comm: the mpi4py communicator (default: a duplicate of COMM_WORLD, freed after).
        hooks: extra ``mpidml.engine.hooks.Hook`` objects (e.g. your own logger).
        **options: any ``TrainConfig`` field, named as the CLI flag with ``_`` for ``-``
            (``epochs=5, batch_size=256, lr=0.1, checkpoint_dir="ck"``).

    Raises:
        ValueError: an unknown option (naming it and the closest valid ones).
        SystemExit: the run was stopped by a signal (code 3), as the CLI.
    """
    import dataclasses
    import difflib

    from .engine.config import TrainConfig
    from .engine.trainer import Trainer

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        hints = {u: difflib.get_close_matches(u, names, n=2) for u in unknown}
        raise ValueError("unknown option(s) for mpidml.fit: " + "; ".join(
            f"{u!r}" + (f" (did you mean {' or '.join(map(repr, h))}?)" if h else "") for u, h in hints.items()))
    user_model = None
    if isinstance(model, str):
        options["model"] = model
    elif model is not None:
        user_model = model
    cfg = TrainConfig(data=data, algo=algo, **options)
    own = comm is None
    if own:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD.Dup()
    try:
        trainer = Trainer(cfg, comm, model=user_model, hooks=hooks)
        summary = trainer.run()
    finally:
        if own:
            comm.Free()
    params = summary.pop("params")
    return FitResult(model=trainer.model, params=params, summary=summary)
