"""``python -m mpidml.predict MODEL.h5 DATA -o OUT.h5`` (serial or under mpiexec): predictions
of a saved model for every row of DATA, in row order. Each rank predicts its own rows;
rank 0 gathers them and writes ``/prediction`` (class or value) and ``/score``
(P(y=1) for logreg, the winning logit for softmax/mlp) atomically."""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np

__all__ = ["main"]


def _quiet(*_args) -> None:
    """A log function for ranks other than 0."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpidml.predict",
                                 description="Predictions of a model saved with --save-model for every row "
                                             "of an HDF5 data set (labels in /y are read but not used).")
    ap.add_argument("model", metavar="MODEL.h5")
    ap.add_argument("data", metavar="DATA")
    ap.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    args = ap.parse_args(argv)
    from mpi4py import MPI

    from .data.loader import load_shard_collective
    from .runtime.atomic import atomic_path
    from .runtime.errors import fail_together, install_abort_hook
    from .saved import load_model, predict

    install_abort_hook()
    comm = MPI.COMM_WORLD.Dup()
    from .runtime.threads import limit_threads
    limit_threads(comm)   # ranks sharing a node split its cores (BLAS, numba)
    rank = comm.Get_rank()
    from .data.layout import input_files
    from .runtime.outputs import check_output

    fail_together(comm, "checking the output path", check_output, args.output, "predictions", "-o",
                  input_files(("MODEL", args.model), ("DATA", args.data)))
    model, params, desc, _ = fail_together(comm, f"reading the model {args.model}", load_model, args.model)
    shard = load_shard_collective(comm, args.data, model.label_mode, log=print if rank == 0 else _quiet)
    pred, score = predict(desc["kind"], model, params, shard.X)
    parts = comm.gather((shard.start, pred, score), root=0)

    def write():
        if rank == 0:
            parts.sort(key=lambda p: p[0])
            with atomic_path(args.output) as tmp:
                with h5py.File(tmp, "w") as f:
                    f["prediction"] = np.concatenate([p[1] for p in parts])
                    f["score"] = np.concatenate([p[2] for p in parts])
                    f.attrs["model"] = args.model
                    f.attrs["data"] = args.data

    fail_together(comm, f"writing {args.output}", write)
    if rank == 0:
        print(f"wrote {args.output}: {shard.n_total} predictions from {desc['kind']} model {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
