"""Convert libsvm/svmlight, CSV and .npz files to the mpidml HDF5 schema, streaming.

Input is read in blocks of ``block_rows`` rows and appended to the output as it goes,
so files larger than memory convert with memory bounded by one block. The output is
written atomically (nothing under the target name unless the conversion finished).

* libsvm / svmlight: ``label idx:value idx:value ... [# comment]`` → CSR; indices are
  1-based unless ``zero_based``; ``qid:`` tokens are ignored; d is the largest index
  + 1 unless ``n_features`` is given (a larger index is then an error). Indices are
  written int32, or int64 when a column is >= 2**31 (hashed feature spaces; the
  largest column is only known at the end, so the writer widens them on the fly);
  nothing of size d is ever allocated.
* CSV: numeric columns → dense; the label column is ``label_column`` (index or header
  name); a first line that is not numeric is taken as the header.
* .npz: arrays ``X`` and ``y`` (dense), or a scipy.sparse CSR ``.npz`` (``data``,
  ``indices``, ``indptr``, ``shape``) plus a labels array; members are streamed from
  the zip archive, compressed or not.

Errors name the input file and line (or member).
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from ..runtime.errors import MpidmlError
from .layout import CSRMatrix
from .writer import DataSetWriter

__all__ = ["convert", "libsvm_blocks", "csv_blocks", "detect_format", "FORMATS"]

FORMATS = ("libsvm", "csv", "npz")
BLOCK_ROWS = 65536


def detect_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".svm", ".libsvm", ".svmlight"):
        return "libsvm"
    if ext in (".csv", ".tsv", ".txt"):
        return "csv"
    if ext == ".npz":
        return "npz"
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


def _csr_block(cols, vals, indptr, d, dtype) -> CSRMatrix:
    indptr = np.array(indptr, np.int64)
    cols = np.array(cols, np.int64)
    vals = np.array(vals, dtype)
    # sort the columns within each row (files need not be sorted); keep duplicates
    row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((cols, row))
    return CSRMatrix(vals[order], cols[order], indptr, (len(indptr) - 1, d or 0))


def csv_blocks(path: str, label_column="0", delimiter: str = ",", block_rows: int = BLOCK_ROWS,
               dtype=np.float32):
    """Yield (X dense block, labels float64) from a CSV file of numbers."""
    with open(path) as fh:
        first = fh.readline()
        if not first.strip():
            raise MpidmlError(f"{path}: empty file")
        cells = [c.strip() for c in first.rstrip("\n").split(delimiter)]
        header = None
        try:
            [float(c) for c in cells]
        except ValueError:
            header = cells
        ncol = len(cells)
        if str(label_column).lstrip("-").isdigit():
            lab = int(label_column) % ncol
        elif header and label_column in header:
            lab = header.index(label_column)
        else:
            raise MpidmlError(f"{path}: no label column {label_column!r} (header: {header})")
        feats = [i for i in range(ncol) if i != lab]
        lines, start_line = ([] if header else [first]), (2 if header else 1)

        def parse(block, line0):
            try:
                a = np.loadtxt(io.StringIO("".join(block)), delimiter=delimiter, ndmin=2, dtype=np.float64)
            except ValueError as exc:
                raise MpidmlError(f"{path}: lines {line0}..{line0 + len(block) - 1}: {exc}") from None
            if a.shape[1] != ncol:
                raise MpidmlError(f"{path}: line {line0}..: {a.shape[1]} columns, {ncol} expected")
            return a[:, feats].astype(dtype), a[:, lab]

        for line in fh:
            if line.strip():
                lines.append(line)
            if len(lines) == block_rows:
                yield parse(lines, start_line)
                start_line += len(lines)
                lines = []
        if lines:
            yield parse(lines, start_line)


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


def convert(src: str, dst: str, fmt: str | None = None, dtype=np.float32, label_dtype=np.float32,
            zero_based: bool = False, n_features: int | None = None, label_column="0",
            delimiter: str = ",", x_key: str = "X", y_key: str = "y", labels_path: str | None = None,
            block_rows: int = BLOCK_ROWS, checksums: bool = False) -> dict:
    """Convert ``src`` to the HDF5 file ``dst`` (atomically, with content checksums if
    ``checksums``: the CLI's default); returns a summary dict."""
    if not os.path.exists(src):
        raise MpidmlError(f"{src}: no such file")
    from ..runtime.outputs import check_output
    check_output(dst, "data", "output", [("the conversion", src), ("--labels", labels_path)])
    fmt = fmt or detect_format(src)
    dtype, label_dtype = np.dtype(dtype), np.dtype(label_dtype)
    if fmt == "libsvm":
        blocks = libsvm_blocks(src, zero_based, n_features, block_rows, dtype)
        # int32 indices unless a column needs int64 (decided while streaming: see the writer)
        index_dtype = "auto" if n_features is None or n_features > 2**31 else np.int32
        sparse, d = True, n_features or 0
    elif fmt == "csv":
        blocks = csv_blocks(src, label_column, delimiter, block_rows, dtype)
        sparse, index_dtype, d = False, None, None
    elif fmt == "npz":
        blocks = npz_blocks(src, x_key, y_key, labels_path, block_rows)
        sparse, index_dtype, d = None, None, None
    else:
        raise MpidmlError(f"unknown format {fmt!r}; one of {FORMATS}")
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        raise MpidmlError(f"{src}: no rows")
    X0, _ = first
    if sparse is None:
        sparse = isinstance(X0, CSRMatrix)
        if not sparse:
            dtype = X0.dtype if X0.dtype.kind == "f" else dtype  # .npz float arrays keep their dtype
    if sparse and fmt == "npz":
        d, index_dtype = X0.d, X0.indices.dtype
        dtype = X0.data.dtype if X0.data.dtype.kind == "f" else dtype
    if not sparse:
        d = X0.shape[1]
    attrs = {"converted_from": os.path.abspath(src), "format": fmt}
    max_col = -1
    with DataSetWriter(dst, d, dtype, label_dtype, sparse=sparse, index_dtype=index_dtype or np.int32,
                       attrs=attrs, checksums=checksums) as w:
        for X, y in _chain(first, blocks):
            if sparse and X.nnz:
                max_col = max(max_col, int(X.indices.max()))
            w.append(X, y)
        if sparse and fmt == "libsvm":
            w.d = max(n_features or 0, max_col + 1)
    return {"rows": w.n, "d": w.d, "nnz": w.nnz if sparse else None, "sparse": sparse,
            "dtype": str(dtype), "index_dtype": str(w.index_dtype) if sparse else None, "path": dst}


def _chain(first, blocks):
    yield first
    yield from blocks
