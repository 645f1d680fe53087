"""Convert libsvm/svmlight, CSV and .npz files to the mpidml HDF5 schema, streaming.

Input is read in blocks of ``block_rows`` rows and appended to the output as it goes,
so files larger than memory convert with memory bounded by one block. The output is
written atomically (nothing under the target name unless the conversion finished).

* libsvm / svmlight: ``label idx:value idx:value ... [# comment]`` → CSR; the index
  base is ``zero_based`` (True/False) or, with ``"auto"`` (the default, as scikit-learn's
  ``load_svmlight_file``), zero-based iff index 0 appears anywhere in the file (a
  first pass looks for it); ``qid:`` tokens are ignored; d is the largest index
  + 1 unless ``n_features`` is given (a larger index is then an error). Indices are
  written int32, or int64 when a column is >= 2**31 (hashed feature spaces; the
  largest column is only known at the end, so the writer widens them on the fly);
  nothing of size d is ever allocated.
* CSV/TSV: dense; header, label column (or none: unlabelled), string labels (mapped to
  0..K-1, the names stored in the ``label_names`` attribute of ``/X``), missing cells and
  categorical columns (one-hot, stored in ``categories``) as ``table.scan_csv`` decides.
* .npy: a 2-D float array (labels from ``labels_path``, or column ``label_column`` of
  it, or none), or a structured array (one field per column; label field by name).
* .npz: arrays ``X`` and ``y`` (dense), or a scipy.sparse CSR ``.npz`` (``data``,
  ``indices``, ``indptr``, ``shape``) plus a labels array; members are streamed from
  the zip archive, compressed or not.

Errors name the input file and line (or member).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

import numpy as np

from ..runtime.errors import MpidmlError
from .layout import CSRMatrix
from .writer import DataSetWriter

__all__ = ["convert", "libsvm_blocks", "libsvm_index_base", "detect_format", "stored_label_names",
           "FORMATS"]

FORMATS = ("libsvm", "csv", "npz", "npy")
BLOCK_ROWS = 65536


def detect_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".svm", ".libsvm", ".svmlight"):
        return "libsvm"
    if ext in (".csv", ".tsv", ".txt"):
        return "csv"
    if ext in (".npz", ".npy"):
        return ext[1:]
    raise MpidmlError(f"{path}: cannot tell the format from the extension; pass --format "
                      f"{'|'.join(FORMATS)}")


def libsvm_blocks(path: str, zero_based: bool = False, n_features: int | None = None,
                  block_rows: int = BLOCK_ROWS, dtype=np.float32):
    """Yield (CSRMatrix block, labels float64) from a libsvm file; d of each block is
    ``n_features`` or 0 (the caller tracks the largest column)."""
    shift = 0 if zero_based else 1
    with open(path) as fh:
        labels, cols, vals, indptr = [], [], [], [0]
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            try:
                labels.append(float(tokens[0]))
                for tok in tokens[1:]:
                    key, _, value = tok.partition(":")
                    if key == "qid":
                        continue
                    c = int(key) - shift
                    if c < 0 or (n_features is not None and c >= n_features):
                        raise ValueError(f"feature index {key} out of range"
                                         + ("" if c < 0 and zero_based else
                                            " (1-based; pass --zero-based?)" if c < 0 else
                                            f" for --n-features {n_features}"))
                    cols.append(c)
                    vals.append(float(value))
            except ValueError as exc:
                raise MpidmlError(f"{path}: line {lineno}: {exc}") from None
            indptr.append(len(cols))
            if len(labels) == block_rows:
                yield _csr_block(cols, vals, indptr, n_features, dtype), np.array(labels)
                labels, cols, vals, indptr = [], [], [], [0]
        if labels:
            yield _csr_block(cols, vals, indptr, n_features, dtype), np.array(labels)


def libsvm_index_base(path: str) -> tuple[bool, str]:
    """(zero_based, why) of a libsvm file, as scikit-learn's ``zero_based="auto"``: zero-based
    iff a ``0:`` feature index appears (the first pass stops there), unless the file says
    ``# Column indices are zero-based|one-based`` (``dump_svmlight_file(comment=...)``)."""
    pat = re.compile(r"(?:^|\s)[+]?0+:")
    said = re.compile(r"#\s*column indices are (zero|one)-based", re.I)
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            m = said.search(line) if "#" in line else None
            if m:
                return m.group(1).lower() == "zero", f"{m.group(1).lower()}-based (line {lineno} says so)"
            if "0:" in line and pat.search(line.split("#", 1)[0]):
                return True, f"zero-based (index 0 on line {lineno})"
    return False, ("one-based (no index 0 in the file; if it is zero-based all the same, e.g. written by "
                   "scikit-learn's dump_svmlight_file, pass --zero-based yes)")


def stored_label_names(path: str) -> list[str] | None:
    """The class names of a converted file whose string labels were mapped to 0..K-1."""
    from .layout import open_h5

    with open_h5(path) as f:
        names = f["X"].attrs.get("label_names") if "X" in f else None
    return json.loads(names) if names is not None else None


def _csr_block(cols, vals, indptr, d, dtype) -> CSRMatrix:
    indptr = np.array(indptr, np.int64)
    cols = np.array(cols, np.int64)
    vals = np.array(vals, dtype)
    # sort the columns within each row (files need not be sorted); keep duplicates
    row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((cols, row))
    return CSRMatrix(vals[order], cols[order], indptr, (len(indptr) - 1, d or 0))


class _NpyStream:
    """Rows of one .npy member of a zip archive, read a block at a time."""

    def __init__(self, zf: zipfile.ZipFile, name: str, path: str):
        self.fh = zf.open(name)
        version = np.lib.format.read_magic(self.fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        self.shape, fortran, self.dtype = read_header(self.fh)
        if fortran and len(self.shape) > 1:
            raise MpidmlError(f"{path}: member {name} is Fortran-ordered; save it C-ordered")
        if self.dtype.hasobject:
            raise MpidmlError(f"{path}: member {name} holds Python objects, not numbers")
        self.row_items = int(np.prod(self.shape[1:])) if len(self.shape) > 1 else 1

    def read(self, rows: int) -> np.ndarray:
        nbytes = rows * self.row_items * self.dtype.itemsize
        buf = self.fh.read(nbytes)
        a = np.frombuffer(buf, self.dtype)
        return a.reshape((-1,) + tuple(self.shape[1:]))

    def close(self):
        self.fh.close()


def npz_blocks(path: str, x_key: str = "X", y_key: str = "y", labels_path: str | None = None,
               block_rows: int = BLOCK_ROWS):
    """Yield blocks from a .npz: dense ``x_key``/``y_key``, or a scipy CSR .npz whose labels
    are ``y_key`` in the same archive or in ``labels_path`` (.npy/.npz)."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise MpidmlError(f"{path}: not a readable .npz ({exc})") from None
    with zf:
        names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        if {"data", "indices", "indptr", "shape"} <= names:
            yield from _npz_csr(zf, path, y_key, labels_path, block_rows)
            return
        for key in (x_key, y_key):
            if key not in names:
                raise MpidmlError(f"{path}: no array {key!r} (has {sorted(names)})")
        X, y = _NpyStream(zf, x_key + ".npy", path), _NpyStream(zf, y_key + ".npy", path)
        if len(X.shape) != 2 or len(y.shape) != 1 or X.shape[0] != y.shape[0]:
            raise MpidmlError(f"{path}: {x_key} {X.shape} and {y_key} {y.shape}: (n, d) and (n,) expected")
        n = X.shape[0]
        for a in range(0, n, block_rows):
            m = min(n, a + block_rows) - a
            yield X.read(m), y.read(m)


def _npz_csr(zf, path, y_key, labels_path, block_rows):
    fmt = np.load(io.BytesIO(zf.read("format.npy"))).item() if "format.npy" in zf.namelist() else "csr"
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    if fmt != "csr":
        raise MpidmlError(f"{path}: sparse format {fmt!r}; only CSR is supported")
    shape = tuple(int(s) for s in np.load(io.BytesIO(zf.read("shape.npy"))))
    indptr = np.load(io.BytesIO(zf.read("indptr.npy"))).astype(np.int64)  # n + 1 entries: small
    data, indices = _NpyStream(zf, "data.npy", path), _NpyStream(zf, "indices.npy", path)
    if labels_path:
        y = np.load(labels_path)
        y = y[y_key] if hasattr(y, "files") else y
    elif y_key + ".npy" in zf.namelist():
        y = np.load(io.BytesIO(zf.read(y_key + ".npy")))
    else:
        raise MpidmlError(f"{path}: sparse matrix without labels: add {y_key!r} or pass --labels")
    if len(y) != shape[0]:
        raise MpidmlError(f"{path}: {shape[0]} rows but {len(y)} labels")
    for a in range(0, shape[0], block_rows):
        b = min(shape[0], a + block_rows)
        lo, hi = indptr[a], indptr[b]
        yield (CSRMatrix(data.read(hi - lo), indices.read(hi - lo), indptr[a:b + 1] - lo, (b - a, shape[1])),
               y[a:b])


def npy_blocks(path: str, labels_path: str | None = None, label_column=None, block_rows: int = BLOCK_ROWS):
    """Yield (X block, labels or None) from a .npy file: a 2-D numeric array (labels from
    ``labels_path``, or its column ``label_column``, or ``"none"``), or a structured
    array of numeric fields (the label field named by ``label_column``, by default one
    called label/y/target/class). Read through a memory map, a block at a time."""
    from .table import LABEL_NAMES

    def load(p):
        try:
            return np.load(p, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise MpidmlError(f"{p}: not a readable .npy of numbers ({exc})") from None

    A = load(path)
    spec = None if label_column is None else str(label_column)
    if A.dtype.names:
        names = list(A.dtype.names)
        if spec is None and labels_path is None:
            found = [n for n in names if n.lower() in LABEL_NAMES]
            if not found:
                raise MpidmlError(f"{path}: which field holds the labels? None of {names} is named "
                                  f"{'/'.join(LABEL_NAMES)}; pass --label-column NAME, --labels FILE.npy "
                                  "or --label-column none")
            spec = found[0]
        label = None if spec is None or spec.lower() == "none" else spec
        if label is not None and label not in names:
            raise MpidmlError(f"{path}: no field {label!r} (fields: {names})")
        feats = [n for n in names if n != label]
        bad = [n for n in feats + ([label] if label else []) if A.dtype[n].kind not in "iufb" or A.dtype[n].shape]
        if bad:
            raise MpidmlError(f"{path}: fields {bad} are not numeric scalars")
        cols = lambda a, b: np.column_stack([A[n][a:b] for n in feats])  # noqa: E731
        labels = (lambda a, b: A[label][a:b]) if label else None
    else:
        if A.ndim != 2 or A.dtype.kind not in "iufb":
            raise MpidmlError(f"{path}: array of shape {A.shape} dtype {A.dtype}; a 2-D numeric (n, d) "
                              "array (or a structured array) expected")
        keep = np.arange(A.shape[1])
        if labels_path is not None:
            Y = load(labels_path)
            if Y.ndim != 1 or Y.shape[0] != A.shape[0]:
                raise MpidmlError(f"{labels_path}: labels of shape {Y.shape}; ({A.shape[0]},) expected "
                                  f"for the rows of {path}")
            labels = lambda a, b: Y[a:b]  # noqa: E731
        elif spec is not None and spec.lower() == "none":
            labels = None
        elif spec is not None and spec.lstrip("-").isdigit() and -A.shape[1] <= int(spec) < A.shape[1]:
            j = int(spec) % A.shape[1]
            keep = keep[keep != j]
            labels = lambda a, b: A[a:b, j]  # noqa: E731
        else:
            raise MpidmlError(f"{path}: where are the labels? Pass --labels FILE.npy, --label-column INDEX "
                              "(a column of the array) or --label-column none (unlabelled)"
                              + (f"; {spec!r} is not a column index 0..{A.shape[1] - 1}" if spec else ""))
        full = len(keep) == A.shape[1]
        cols = lambda a, b: np.asarray(A[a:b]) if full else np.asarray(A[a:b])[:, keep]  # noqa: E731
    n = A.shape[0]
    for a in range(0, n, block_rows):
        b = min(n, a + block_rows)
        yield np.ascontiguousarray(cols(a, b)), (None if labels is None else np.asarray(labels(a, b)))


def convert(src: str, dst: str, fmt: str | None = None, dtype=np.float32, label_dtype=np.float32,
            zero_based="auto", n_features: int | None = None, label_column=None,
            delimiter: str | None = None, x_key: str = "X", y_key: str = "y", labels_path: str | None = None,
            block_rows: int = BLOCK_ROWS, header: str = "auto", na: str = "error", categorical: str = "none",
            ignore_columns: str | None = None, checksums: bool = False) -> dict:
    """Convert ``src`` to the HDF5 file ``dst`` (atomically, with content checksums if
    ``checksums``: the CLI's default); returns a summary dict.

    ``zero_based``: True, False or "auto" (libsvm). ``label_column``: CSV/.npy label
    column (name or 0-based index), ``"none"`` for an unlabelled output (no ``/y``), or
    None (CSV: a header column named label/y/target/class, else an error).
    ``delimiter``: CSV delimiter (None: tab for .tsv, else comma; backslash escapes
    interpreted). ``header``, ``na``, ``categorical``, ``ignore_columns``: see
    ``table.scan_csv``. The summary says what was decided: ``index_base`` (libsvm),
    ``label_names``, ``categories``, ``na_dropped``."""
    if not os.path.exists(src):
        raise MpidmlError(f"{src}: no such file")
    from ..runtime.outputs import check_output
    check_output(dst, "data", "output", [("the conversion", src), ("--labels", labels_path)])
    fmt = fmt or detect_format(src)
    dtype = np.dtype(dtype)
    label_dtype = np.dtype(label_dtype)
    info: dict = {}
    attrs = {"converted_from": os.path.abspath(src), "format": fmt}
    if fmt == "libsvm":
        zero_based = _index_base(src, zero_based, info, attrs)
        blocks = libsvm_blocks(src, zero_based, n_features, block_rows, dtype)
        # int32 indices unless a column needs int64 (decided while streaming: see the writer)
        index_dtype = "auto" if n_features is None or n_features > 2**31 else np.int32
        sparse, d = True, n_features or 0
    elif fmt == "csv":
        blocks, d = _csv_blocks(src, label_column, delimiter, header, na, categorical, ignore_columns,
                                block_rows, dtype, info, attrs)
        sparse, index_dtype = False, None
    elif fmt == "npz":
        blocks = npz_blocks(src, x_key, y_key, labels_path, block_rows)
        sparse, index_dtype, d = None, None, None
    elif fmt == "npy":
        blocks = npy_blocks(src, labels_path, label_column, block_rows)
        sparse, index_dtype, d = False, None, None
    else:
        raise MpidmlError(f"unknown format {fmt!r}; one of {FORMATS}")
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        raise MpidmlError(f"{src}: no rows")
    X0, y0 = first
    if sparse is None:
        sparse = isinstance(X0, CSRMatrix)
    if not sparse and fmt in ("npz", "npy"):
        dtype = X0.dtype if X0.dtype.kind == "f" else dtype  # binary float arrays keep their dtype
    if sparse and fmt == "npz":
        d, index_dtype = X0.d, X0.indices.dtype
        dtype = X0.data.dtype if X0.data.dtype.kind == "f" else dtype
    if not sparse:
        d = X0.shape[1]
    max_col = -1
    with DataSetWriter(dst, d, dtype, None if y0 is None else label_dtype, sparse=sparse,
                       index_dtype=index_dtype or np.int32, attrs=attrs, checksums=checksums) as w:
        for X, y in _chain(first, blocks):
            if sparse and X.nnz:
                max_col = max(max_col, int(X.indices.max()))
            w.append(X, y)
        if sparse and fmt == "libsvm":
            w.d = max(n_features or 0, max_col + 1)
    return {"rows": w.n, "d": w.d, "nnz": w.nnz if sparse else None, "sparse": sparse,
            "dtype": str(dtype), "index_dtype": str(w.index_dtype) if sparse else None, "path": dst,
            "labelled": y0 is not None, **info}


def _index_base(src: str, zero_based, info: dict, attrs: dict) -> bool:
    """libsvm: whether indices are zero-based (``zero_based`` True/False/"auto"/"yes"/"no");
    records the decision in ``info`` (summary) and ``attrs`` (of /X)."""
    if zero_based == "auto":
        zero_based, info["index_base"] = libsvm_index_base(src)
    elif isinstance(zero_based, str):
        if zero_based not in ("yes", "no"):
            raise MpidmlError(f"--zero-based {zero_based!r}: auto, yes or no expected")
        zero_based = zero_based == "yes"
    info.setdefault("index_base", "zero-based" if zero_based else "one-based")
    attrs["index_base"] = 0 if zero_based else 1
    return bool(zero_based)


def _csv_blocks(src, label_column, delimiter, header, na, categorical, ignore_columns, block_rows, dtype,
                info: dict, attrs: dict):
    """CSV/TSV: scan ``src`` (``table.scan_csv``), record the decisions in ``info`` and
    ``attrs``; returns (blocks, d)."""
    from .table import scan_csv, table_blocks, unescape_delimiter

    if delimiter is None:
        delimiter = "\t" if src.lower().endswith(".tsv") else ","
    plan = scan_csv(src, label_column, unescape_delimiter(delimiter), header, na, categorical, ignore_columns)
    info.update(label_names=plan.label_names, na_dropped=plan.na_rows,
                categories={plan.names[c]: v for c, v in plan.categories.items()},
                label=None if plan.label is None else plan.names[plan.label])
    if plan.label_names:
        attrs["label_names"] = json.dumps(plan.label_names)
    if plan.categories:
        attrs["categories"] = json.dumps(info["categories"])
        attrs["feature_names"] = json.dumps(plan.feature_names())
    if plan.na_rows == plan.rows:
        raise MpidmlError(f"{src}: every row has a missing cell; nothing left after --na drop")
    return table_blocks(plan, block_rows, dtype), plan.d


def _chain(first, blocks):
    yield first
    yield from blocks
