"""``python -m mpidml.predict MODEL.h5 DATA -o OUT`` (serial or under mpiexec): predictions
of a saved model for every row of DATA, in row order. DATA needs no labels (``/y`` is
not read if present). Each rank predicts its own rows; rank 0 gathers them and writes
OUT atomically, in the format its extension names:

* ``.h5``/``.hdf5``: ``/prediction`` (class or value), ``/score`` (P(y=1) for logreg,
  the winning logit for softmax/mlp, the value for lsq) and ``/proba`` ((n, K) class
  probabilities for softmax/mlp, (n,) P(y=1) for logreg);
* ``.csv``/``.tsv``: a header row, then one row per input row: ``row`` (0-based global
  row), ``prediction``, then ``proba_0 .. proba_{K-1}`` (softmax/mlp) or ``proba_1``
  (logreg); lsq has the value only;
* ``.npy``: a structured array with the same fields as the CSV columns.

If the model was trained on a file whose string labels were mapped to 0..K-1
(``label_names`` attribute of the data or the model), the CSV also has a ``label`` column
with the class name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import h5py
import numpy as np

from . import __version__
from .runtime.errors import EXIT_USAGE

__all__ = ["main", "OUTPUT_FORMATS", "output_format", "write_predictions"]

OUTPUT_FORMATS = {".h5": "hdf5", ".hdf5": "hdf5", ".csv": "csv", ".tsv": "tsv", ".npy": "npy"}


def _quiet(*_args) -> None:
    """A log function for ranks other than 0."""


def output_format(path: str) -> str:
    """The output format named by ``path``'s extension; ValueError for any other."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"-o {path}: unknown output extension {ext or '(none)'!r}; use one of "
                         f"{', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[ext]


def _columns(pred: np.ndarray, proba: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    """(name, column) pairs of the tabular outputs (CSV/TSV/.npy)."""
    cols = [("row", np.arange(pred.shape[0], dtype=np.int64)), ("prediction", pred)]
    if proba is not None and proba.ndim == 2:
        cols += [(f"proba_{k}", proba[:, k]) for k in range(proba.shape[1])]
    elif proba is not None:
        cols.append(("proba_1", proba))
    return cols


def write_predictions(path: str, pred: np.ndarray, score: np.ndarray, proba: np.ndarray | None,
                      attrs: dict, label_names: list[str] | None = None) -> None:
    """Write all predictions (rows in order) to ``path`` atomically, format by extension."""
    from .runtime.atomic import atomic_path

    fmt = output_format(path)
    with atomic_path(path) as tmp:
        if fmt == "hdf5":
            with h5py.File(tmp, "w") as f:
                f["prediction"] = pred
                f["score"] = score
                if proba is not None:
                    f["proba"] = proba
                for k, v in attrs.items():
                    f.attrs[k] = v
                if label_names:
                    f.attrs["label_names"] = json.dumps(label_names)
            return
        cols = _columns(pred, proba)
        if fmt == "npy":
            arr = np.empty(pred.shape[0], dtype=[(name, c.dtype) for name, c in cols])
            for name, c in cols:
                arr[name] = c
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            return
        sep = "\t" if fmt == "tsv" else ","
        names = [name for name, _ in cols]
        text_cols = [c.astype(str) if c.dtype.kind in "iu" else np.char.mod("%.9g", c) for _, c in cols]
        if label_names and pred.dtype.kind in "iu":
            names.insert(2, "label")
            text_cols.insert(2, np.asarray(label_names, dtype=object)[pred].astype(str))
        with open(tmp, "w") as fh:
            fh.write(sep.join(names) + "\n")
            for i in range(0, pred.shape[0], 65536):
                block = [c[i:i + 65536] for c in text_cols]
                fh.writelines(sep.join(r) + "\n" for r in zip(*block))


def _label_names(desc: dict, data_attrs: dict) -> list[str] | None:
    """Class names of a model trained on mapped string labels: the model's, else the data's."""
    for src in (desc.get("label_names"), data_attrs.get("label_names")):
        if src:
            return json.loads(src) if isinstance(src, str) else list(src)
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m mpidml.predict",
        description="Predictions of a model saved with --save-model for every row of a data set "
                    "(HDF5 file, directory of shards or glob; labels are not needed and not read). "
                    "Softmax/MLP models give the class and the class probabilities, logreg the class "
                    "and P(y=1), lsq the value. Run serially or under mpiexec (the same output at "
                    "any rank count).",
        epilog="Output by the extension of -o: .h5 (/prediction, /score, /proba), .csv/.tsv (header "
               "row; columns row, prediction, proba_0..proba_{K-1} or proba_1; one line per input "
               "row, in order), .npy (structured array with those fields). Exit status: 0 success; "
               "2 bad arguments or input.")
    ap.add_argument("model", metavar="MODEL.h5")
    ap.add_argument("data", metavar="DATA")
    ap.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output file: .h5, .hdf5, .csv, .tsv or .npy")
    ap.add_argument("--version", action="version", version=f"mpidml {__version__}")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        output_format(args.output)
    except ValueError as exc:
        ap.print_usage(sys.stderr)
        sys.stderr.write(f"mpidml.predict: error: {exc}\n")
        return EXIT_USAGE
    from mpi4py import MPI

    from .data.loader import load_shard_collective
    from .runtime.errors import fail_together, install_abort_hook
    from .saved import load_model, predict, predict_proba

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
    shard = load_shard_collective(comm, args.data, "none", log=print if rank == 0 else _quiet)
    fail_together(comm, "checking the data", _fit_width, shard, desc["d"], args.data, args.model)
    params = params.astype(shard.X.dtype, copy=False)
    pred, score = predict(desc["kind"], model, params, shard.X)
    _, proba = predict_proba(desc["kind"], model, params, shard.X)
    parts = comm.gather((shard.start, pred, score, proba), root=0)

    def write():
        if rank == 0:
            parts.sort(key=lambda p: p[0])

            def cat(i):
                return None if parts[0][i] is None else np.concatenate([p[i] for p in parts])

            from .data.layout import open_h5

            with open_h5(shard.dataset.files[0].path) as f:
                data_attrs = dict(f["X"].attrs)
            write_predictions(args.output, cat(1), cat(2), cat(3), {"model": args.model, "data": args.data},
                              _label_names(desc, data_attrs))

    fail_together(comm, f"writing {args.output}", write)
    if rank == 0:
        print(f"wrote {args.output}: {shard.n_total} predictions from {desc['kind']} model {args.model}")
    return 0


def _fit_width(shard, d: int, data: str, model: str) -> None:
    """The model's d: a sparse file may have fewer columns (its largest index was lower)."""
    from .data.layout import CSRMatrix
    from .runtime.errors import MpidmlError

    if shard.sparse and shard.d < d:
        shard.X = CSRMatrix(shard.X.data, shard.X.indices, shard.X.indptr, (shard.X.n, d))
    elif shard.d != d:
        raise MpidmlError(f"{data}: {shard.d} features, but the model {model} was trained on d={d}")


if __name__ == "__main__":
    sys.exit(main())
