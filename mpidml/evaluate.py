"""``python -m mpidml.evaluate MODEL.h5 DATA`` (serial or under mpiexec): the saved model's
objective and accuracy (or RMSE for lsq) on a data set, each rank reading only its rows."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import __version__

__all__ = ["evaluate", "main"]


def evaluate(comm, model_path: str, data: str, log=print) -> dict:
    """Collective: {"objective", metric_name, "rows"} of the saved model on ``data``."""
    from .comm.ring import ring_allreduce
    from .data.loader import load_shard_collective
    from .runtime.errors import fail_together
    from .saved import load_model

    model, params, desc, meta = fail_together(comm, f"reading the model {model_path}", load_model, model_path)
    shard = load_shard_collective(comm, data, model.label_mode, log=log)
    params = params.astype(shard.X.dtype if hasattr(shard.X, "dtype") else params.dtype, copy=False)
    rows = np.arange(shard.n, dtype=np.int64)
    grad = np.empty_like(params)
    buf = np.zeros(3)
    if shard.n:
        buf[0] = model.loss_grad_sum(shard.X, shard.y, rows, params, grad)
        buf[1] = model.metric_sum(shard.X, shard.y, rows, params)
    buf[2] = shard.n
    ring_allreduce(comm, buf)
    n = max(buf[2], 1)
    return {"rows": int(buf[2]), "objective": float(buf[0] / n + model.regularizer(params)),
            model.metric_name: float(model.finish_metric(buf[1], buf[2])), "model": desc}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpidml.evaluate",
                                 description="Objective and accuracy (RMSE for lsq) of a model saved with "
                                             "--save-model, on an HDF5 data set; run serially or under mpiexec.")
    ap.add_argument("--version", action="version", version=f"mpidml {__version__}")
    ap.add_argument("model", metavar="MODEL.h5")
    ap.add_argument("data", metavar="DATA", help="HDF5 file, directory of shards or glob (same schema)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args(argv)
    from mpi4py import MPI

    from .runtime.errors import install_abort_hook

    install_abort_hook()
    comm = MPI.COMM_WORLD.Dup()
    from .runtime.threads import limit_threads
    limit_threads(comm)   # ranks sharing a node split its cores (BLAS, numba)
    res = evaluate(comm, args.model, args.data, log=print if comm.Get_rank() == 0 else (lambda *a: None))
    if comm.Get_rank() == 0:
        if args.json:
            print(json.dumps(res))
        else:
            metric = "rmse" if "rmse" in res else "accuracy"
            print(f"{args.model} on {args.data}: {res['rows']} rows, objective {res['objective']:.6f}, "
                  f"{metric} {res[metric]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
