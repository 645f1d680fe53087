"""``python -m mpidml.data synth|convert|inspect|check``: data set tools.

* ``synth``   — write a synthetic data set (dense binary, sparse click log, multi-class)
* ``convert`` — libsvm/svmlight, CSV or .npz → HDF5, streaming (files larger than memory)
* ``inspect`` — shape, dtype, nnz, label balance, chunking and shard list of a data set
* ``check``   — under MPI, every rank loads and validates its rows exactly as training
  does (``mpiexec -n 8 python -m mpidml.data check DATA``)

Exit status: 0 success; 2 bad arguments or input (message names file and dataset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ..runtime.errors import EXIT_USAGE, MpidmlError

__all__ = ["build_parser", "main", "inspect_dataset"]

SCHEMA_HELP = (
    "Schema: dense dataset /X (n, d) float32|float64, or CSR group /X with data, indices, "
    "indptr and attribute shape=(n, d); /y (n,) labels (binary 0/1 or -1/+1, classes 0..K-1, "
    "or real), absent in an unlabelled data set (predictions only). A data set is one file, "
    "a directory of *.h5 shard files, or a quoted glob.")


def _add_convert_parser(sub) -> None:
    """The ``convert`` subcommand's arguments."""
    c = sub.add_parser("convert", help="convert libsvm / CSV / TSV / .npy / .npz to HDF5 (streaming)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Convert to the mpidml HDF5 schema in blocks of rows, so inputs "
                                   "larger than memory work. libsvm -> CSR (index base detected); "
                                   "CSV/TSV -> dense (header, string labels mapped to 0..K-1 and the "
                                   "mapping stored, missing cells, categorical columns one-hot); .npy "
                                   "-> dense (2-D array plus --labels, or a structured array); .npz -> "
                                   "dense (arrays X, y) or CSR (scipy.sparse.save_npz file plus "
                                   "labels). The output appears only when conversion succeeded.")
    c.add_argument("src", help="input file")
    c.add_argument("dst", help="output HDF5 file")
    c.add_argument("--format", choices=["libsvm", "csv", "npz", "npy"], default=None,
                   help="input format (default: from the extension .svm/.libsvm/.svmlight, .csv/.tsv/.txt, "
                        ".npz, .npy)")
    c.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="feature dtype for text inputs (.npz float arrays keep theirs)")
    c.add_argument("--label-dtype", choices=["float32", "float64", "int32", "int64"], default="float32")
    c.add_argument("--zero-based", choices=["auto", "yes", "no"], default="auto",
                   help="libsvm: feature indices start at 0 (yes) or 1 (no); auto: zero-based iff an "
                        "index 0 appears in the file (as scikit-learn), reported")
    c.add_argument("--n-features", type=int, default=None, help="libsvm: d (default: largest index + 1)")
    c.add_argument("--label-column", default=None, metavar="NAME|INDEX|none",
                   help="CSV/.npy: the label column (header name or 0-based index), or 'none' for an "
                        "unlabelled file (no /y: predictions only). Default: a header column named "
                        "label, y, target or class; otherwise the conversion is refused")
    c.add_argument("--delimiter", default=None,
                   help="CSV delimiter, backslash escapes interpreted ('\\t' is a tab); default: tab "
                        "for .tsv, else comma")
    c.add_argument("--header", choices=["auto", "yes", "no"], default="auto",
                   help="CSV: first line is a header (auto: if none of its cells is a number)")
    c.add_argument("--na", choices=["error", "drop"], default="error",
                   help="CSV: a missing cell (empty, NA, NaN, null, ...) is an error naming line and "
                        "column, or its row is dropped (and the count reported)")
    c.add_argument("--categorical", default="none", metavar="none|auto|COLS",
                   help="CSV: one-hot encode text feature columns (auto), these comma-separated "
                        "columns, or none (a text feature column is an error); values stored in the "
                        "'categories' attribute of /X")
    c.add_argument("--ignore-columns", default=None, metavar="COLS",
                   help="CSV: comma-separated columns (names or indices) to leave out, e.g. a row index")
    c.add_argument("--x-key", default="X", help=".npz: feature array name")
    c.add_argument("--y-key", default="y", help=".npz: label array name")
    c.add_argument("--labels", default=None, help=".npy / .npz CSR: labels from this .npy/.npz file")
    c.add_argument("--block-rows", type=int, default=65536, help="rows per block (bounds memory)")
    c.add_argument("--no-checksums", dest="checksums", action="store_false",
                   help="do not write /checksums (SHA-256 per block of rows, verified at load)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="python -m mpidml.data",
                                description="Data set tools for mpidml. " + SCHEMA_HELP,
                                epilog="Exit status: 0 success; 2 bad arguments or input.")
    p.add_argument("--version", action="version", version=f"mpidml {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{synth,convert,inspect,check}")

    s = sub.add_parser("synth", help="write a synthetic data set",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Write a synthetic data set atomically. Kinds: 'binary' (dense "
                                   "Gaussian features, logistic teacher, labels 0/1); 'clicklog' "
                                   "(CSR indicator features with Zipf popularity hashed into --d "
                                   "columns, labels 0/1 from a sparse logistic teacher); "
                                   "'multiclass' (dense, labels 0..K-1 from a random teacher "
                                   "network, for softmax and MLP models).")
    s.add_argument("kind", choices=["binary", "clicklog", "multiclass"])
    s.add_argument("out", help="output file, or directory when --shards > 1")
    s.add_argument("--rows", "-n", type=int, required=True, help="number of rows")
    s.add_argument("--d", type=int, default=None,
                   help="features (default 100; clicklog: hashed space 1048576)")
    s.add_argument("--classes", "-k", type=int, default=10, help="multiclass: number of classes")
    s.add_argument("--temperature", type=float, default=0.5,
                   help="multiclass: teacher softmax temperature (lower = cleaner labels; 0.05 gives "
                        "a Bayes accuracy near 0.93 at d 32, k 10)")
    s.add_argument("--nnz-per-row", type=float, default=20.0, help="clicklog: mean distinct features per row")
    s.add_argument("--zipf", type=float, default=1.2, help="clicklog: Zipf exponent of feature popularity (> 1)")
    s.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="feature dtype")
    s.add_argument("--seed", type=int, default=0, help="teacher and sample seed")
    s.add_argument("--stream", type=int, default=0,
                   help="sample stream with the same teacher (0 = train, 1 = test, ...)")
    s.add_argument("--shards", type=int, default=1, help="write this many balanced shard files into OUT/")
    s.add_argument("--no-checksums", dest="checksums", action="store_false",
                   help="do not write /checksums (SHA-256 per block of rows, verified at load)")

    _add_convert_parser(sub)

    i = sub.add_parser("inspect", help="describe a data set (file, directory or glob)",
                       description="Print shape, dtypes, layout, nnz, chunking, label balance and "
                                   "shard list. Reads headers and /y only, never /X rows.")
    i.add_argument("data", help="HDF5 file, directory of shard files, or quoted glob")
    i.add_argument("--json", action="store_true", help="one JSON object instead of text")

    k = sub.add_parser("check", help="validate a data set under MPI, as training loads it",
                       description="Every rank loads its balanced row range and validates it "
                                   "(schema, allocated storage, content checksums if the files have "
                                   "them, finite values, labels, sizes) exactly as training does; "
                                   "run it under mpiexec. Problems on any rank are reported once "
                                   "for all ranks (exit 2), never a hang.")
    k.add_argument("data", help="HDF5 file, directory of shard files, or quoted glob")
    k.add_argument("--labels", choices=["binary", "classes", "real", "none"], default="binary")
    return p


def inspect_dataset(spec) -> dict:
    """Facts about a data set from its headers and labels (no feature rows read)."""
    from .layout import open_dataset, open_h5

    ds = open_dataset(spec)
    counts: dict = {}
    lo, hi, total = np.inf, -np.inf, 0.0
    for fs in ds.files if ds.labelled else ():
        with open_h5(fs.path) as f:
            y = f["y"]
            for a in range(0, fs.n, 1 << 20):
                ys = y[a:a + (1 << 20)]
                lo, hi, total = min(lo, float(ys.min())), max(hi, float(ys.max())), total + float(ys.sum())
                if counts is not None:
                    vals, cnt = np.unique(ys, return_counts=True)
                    for v, c in zip(vals.tolist(), cnt.tolist()):
                        counts[v] = counts.get(v, 0) + c
                    if len(counts) > 50:
                        counts = None  # real-valued labels: no balance table
    info = {
        "data": ds.spec, "rows": ds.n, "d": ds.d, "dtype": str(ds.dtype), "layout": "csr" if ds.sparse else "dense",
        "nnz": ds.nnz, "y_dtype": str(ds.y_dtype),
        "labels": None if not ds.labelled else {
            "min": lo, "max": hi, "mean": total / ds.n,
            "counts": ({str(k): v for k, v in sorted(counts.items())} if counts is not None else None)},
        "shards": [{"path": f.path, "rows": f.n, "nnz": f.nnz, "chunks": list(f.chunks) if f.chunks else None}
                   for f in ds.files],
    }
    if ds.sparse:
        info["density"] = ds.nnz / max(ds.n * ds.d, 1)
        info["index_dtype"] = str(ds.files[0].index_dtype)  # the same in every shard (checked)
    return info


def _print_inspect(info: dict) -> None:
    print(f"{info['data']}: {info['rows']} rows x {info['d']} features, {info['layout']} {info['dtype']}"
          + (f", nnz {info['nnz']} ({info['nnz'] / info['rows']:.1f} per row, density {info['density']:.2e}, "
             f"indices {info['index_dtype']})"
             if info["nnz"] is not None else ""))
    lab = info["labels"]
    if lab is None:
        print("labels: none (unlabelled data set, no /y: for predictions)")
    else:
        print(f"labels: {info['y_dtype']}, min {lab['min']:g}, max {lab['max']:g}, mean {lab['mean']:.4f}")
    if lab is not None and lab["counts"] is not None:
        print("label balance: " + ", ".join(f"{k}: {v} ({v / info['rows']:.1%})" for k, v in lab["counts"].items()))
    print(f"{len(info['shards'])} shard file(s):")
    for s in info["shards"]:
        print(f"  {s['path']}: {s['rows']} rows" + (f", nnz {s['nnz']}" if s["nnz"] is not None else "")
              + f", chunks {tuple(s['chunks']) if s['chunks'] else 'contiguous'}")


def _synth(args) -> None:
    from .synth import binary_dense_blocks, clicklog_csr_blocks, multiclass_dense_blocks, write_blocks

    dtype = np.dtype(args.dtype)
    attrs = {"generator": f"mpidml.data synth {args.kind}", "seed": args.seed, "stream": args.stream}
    if args.rows < 1:
        raise MpidmlError(f"--rows must be >= 1, got {args.rows}")
    if args.kind == "clicklog":
        d = args.d or (1 << 20)
        blocks = clicklog_csr_blocks(args.rows, d, args.nnz_per_row, args.zipf, args.seed, dtype, args.stream)
        kw = dict(sparse=True, index_dtype=np.int32 if d < 2**31 else np.int64, y_dtype=np.float32)
    elif args.kind == "multiclass":
        d = args.d or 100
        if not args.temperature > 0:
            raise MpidmlError(f"--temperature must be > 0, got {args.temperature}")
        blocks = multiclass_dense_blocks(args.rows, d, args.classes, args.seed, dtype, args.stream,
                                         temperature=args.temperature)
        kw = dict(y_dtype=np.int64)
        attrs["temperature"] = args.temperature
    else:
        d = args.d or 100
        blocks = binary_dense_blocks(args.rows, d, args.seed, dtype, args.stream)
        kw = dict(y_dtype=np.float32)
    t0 = time.perf_counter()
    paths = write_blocks(args.out, blocks, args.rows, d, dtype, shards=args.shards, attrs=attrs,
                         checksums=args.checksums, **kw)
    print(f"wrote {args.out}: {args.rows} x {d} {args.kind} ({len(paths)} file(s)) "
          f"in {time.perf_counter() - t0:.1f} s")


def _convert(args) -> None:
    from .convert import convert

    t0 = time.perf_counter()
    s = convert(args.src, args.dst, args.format, args.dtype, args.label_dtype, args.zero_based,
                args.n_features, args.label_column, args.delimiter, args.x_key, args.y_key,
                args.labels, args.block_rows, header=args.header, na=args.na, categorical=args.categorical,
                ignore_columns=args.ignore_columns, checksums=args.checksums)
    if "index_base" in s:
        print(f"libsvm indices: {s['index_base']} -> d = {s['d']}")
    if s.get("label"):
        print(f"labels: column {s['label']}")
    if s.get("label_names"):
        print("label mapping (stored in /X attribute label_names): "
              + ", ".join(f"{name!r} -> {k}" for k, name in enumerate(s["label_names"])))
    for col, values in (s.get("categories") or {}).items():
        print(f"one-hot column {col}: {len(values)} values {values}")
    if s.get("na_dropped"):
        print(f"dropped {s['na_dropped']} row(s) with missing cells (--na drop)")
    print(f"wrote {s['path']}: {s['rows']} x {s['d']} {'CSR' if s['sparse'] else 'dense'} {s['dtype']}"
          + (f", nnz {s['nnz']}, indices {s['index_dtype']}" if s["sparse"] else "")
          + ("" if s["labelled"] else ", unlabelled (no /y)")
          + f" in {time.perf_counter() - t0:.1f} s")


def _check(args) -> None:
    from ..runtime.errors import install_abort_hook

    install_abort_hook()  # CollectiveError -> rank 0 prints once, every rank exits 2
    from mpi4py import MPI

    from .loader import load_shard_collective

    comm = MPI.COMM_WORLD.Dup()
    rank = comm.Get_rank()
    log = (lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None)
    shard = load_shard_collective(comm, args.data, args.labels, log=log)
    rows = comm.gather(shard.n, root=0)
    if rank == 0:
        ds = shard.dataset
        from .checksum import describe_checksums

        print(f"ok: {ds.describe()}; rows per rank {rows}"
              + (f"; {shard.n_classes} classes" if shard.n_classes else "") + f"; {describe_checksums(ds)}",
              flush=True)
    comm.Free()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        _check(args)
        return 0
    try:
        if args.command == "synth":
            _synth(args)
        elif args.command == "convert":
            _convert(args)
        else:
            info = inspect_dataset(args.data)
            print(json.dumps(info)) if args.json else _print_inspect(info)
    except (MpidmlError, ValueError) as exc:
        sys.stderr.write(f"mpidml: error: {exc}\n")
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
