"""Writing files in the mpidml schema, streaming and atomically.

``DataSetWriter`` appends blocks of rows (dense arrays or ``CSRMatrix``) to a new file
whose datasets grow as rows arrive, so a converter or generator never holds more than
one block. The file appears under its final name only when the writer closes without
an error (``atomic_path``: temporary file + fsync + rename); on an error nothing is left.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ..runtime.atomic import atomic_path
from .layout import CSRMatrix

__all__ = ["DataSetWriter", "write_dense", "write_csr", "DEFAULT_CHUNK_ROWS"]

DEFAULT_CHUNK_ROWS = 8192
_CSR_CHUNK = 1 << 16  # nonzeros per HDF5 chunk of /X/data and /X/indices
_INT32_MAX = 2**31 - 1
_WIDEN_BLOCK = 1 << 22  # nonzeros per copy step when indices are widened to int64


class DataSetWriter:
    """Context manager: ``with DataSetWriter(path, d, ...) as w: w.append(X, y)``.

    ``sparse=True`` writes the CSR group ``/X`` (``data``, ``indices``, ``indptr`` int64,
    attribute ``shape``); otherwise dense ``/X`` chunked by ``chunk_rows`` rows. Dtypes
    are kept exactly as given. ``attrs`` go on ``/X`` (provenance).

    ``index_dtype="auto"`` (CSR, when the largest column is not known up front, e.g. a
    streamed libsvm file): ``indices`` are int32 until a block holds a column >= 2**31,
    then the dataset is rewritten once as int64 (in blocks; the int32 copy's file space is
    not reclaimed, which costs 4 bytes per nonzero written before the widening). An
    explicit int32 refuses such a column instead of wrapping it.

    ``checksums=True`` also writes ``/checksums`` (SHA-256 per block of rows and dataset,
    ``data/checksum.py``), verified by ``data check`` and at every load.

    ``y_dtype=None`` writes an unlabelled data set (no ``/y``; ``append(X, None)``; no
    ``/checksums/y``).
    """

    def __init__(self, path, d: int, dtype=np.float32, y_dtype=np.float32, sparse: bool = False,
                 index_dtype=np.int32, chunk_rows: int = DEFAULT_CHUNK_ROWS, attrs: dict | None = None,
                 compression: str | None = None, checksums: bool = False):
        self.path = path
        self.d = int(d)
        self.dtype = np.dtype(dtype)
        self.y_dtype = None if y_dtype is None else np.dtype(y_dtype)
        self.sparse = sparse
        self.auto_index = isinstance(index_dtype, str) and index_dtype == "auto"
        self.index_dtype = np.dtype(np.int32 if self.auto_index else index_dtype)
        self.chunk_rows = max(1, int(chunk_rows))
        self.attrs = dict(attrs or {})
        self.compression = compression
        self.n = 0
        self.nnz = 0
        self.hasher = None
        if checksums:   # SHA-256 per block of rows (data/checksum.py), verified at load
            from .checksum import BlockHasher, block_rows_for
            self.hasher = BlockHasher(sparse, block_rows_for(self.d, self.dtype.itemsize, sparse),
                                      labelled=self.y_dtype is not None)

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            # mkstemp creates 0600; a data set gets the usual mode (0666 minus the umask)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            self._f = h5py.File(tmp, "w")
            f, c = self._f, self.compression
            if self.y_dtype is not None:
                self._y = f.create_dataset("y", shape=(0,), maxshape=(None,), dtype=self.y_dtype,
                                           chunks=(self.chunk_rows,), compression=c)
            if self.sparse:
                g = f.create_group("X")
                self._data = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype=self.dtype,
                                              chunks=(_CSR_CHUNK,), compression=c)
                self._indices = g.create_dataset("indices", shape=(0,), maxshape=(None,),
                                                 dtype=self.index_dtype, chunks=(_CSR_CHUNK,),
                                                 compression=c)
                self._indptr = g.create_dataset("indptr", data=np.zeros(1, np.int64), maxshape=(None,),
                                                chunks=(self.chunk_rows,), compression=c)
            else:
                self._X = f.create_dataset("X", shape=(0, self.d), maxshape=(None, self.d),
                                           dtype=self.dtype, chunks=(self.chunk_rows, max(self.d, 1)),
                                           compression=c)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def append(self, X, y) -> None:
        """Append a block of rows: ``X`` (k, d) array or ``CSRMatrix`` with k rows, ``y`` (k,)
        (``None`` for an unlabelled writer)."""
        if (y is None) != (self.y_dtype is None):
            raise ValueError("labels given to an unlabelled writer" if y is not None else "block has no labels")
        k = X.n if isinstance(X, CSRMatrix) else np.shape(X)[0]
        y = None if y is None else np.asarray(y)
        if y is not None and y.shape[0] != k:
            raise ValueError(f"block has {k} rows but {y.shape[0]} labels")
        if self.sparse:
            if not isinstance(X, CSRMatrix):
                raise TypeError("sparse writer needs CSRMatrix blocks")
            nnz = X.nnz
            self._data.resize((self.nnz + nnz,))
            self._data[self.nnz:] = X.data[:nnz].astype(self.dtype, copy=False)
            if nnz and self.index_dtype == np.int32:
                top = int(X.indices[:nnz].max())
                if top > _INT32_MAX:
                    if not self.auto_index:
                        raise ValueError(f"column index {top} does not fit the int32 indices; "
                                         f"write int64 indices (index_dtype='auto' or int64)")
                    self._widen_indices()
            self._indices.resize((self.nnz + nnz,))
            self._indices[self.nnz:] = X.indices[:nnz].astype(self.index_dtype, copy=False)
            self._indptr.resize((self.n + k + 1,))
            ends = np.asarray(X.indptr[1:], np.int64) + self.nnz
            self._indptr[self.n + 1:] = ends
            if self.hasher is not None:
                arrays = {"X/data": X.data[:nnz].astype(self.dtype, copy=False),
                          "X/indices": X.indices[:nnz], "X/indptr": ends,
                          "rowptr": np.asarray(X.indptr, np.int64)}
                if y is not None:
                    arrays["y"] = y.astype(self.y_dtype, copy=False)
                self.hasher.add(self.n, arrays)
            self.nnz += nnz
        else:
            X = np.asarray(X)
            if X.shape != (k, self.d):
                raise ValueError(f"block has shape {X.shape}; ({k}, {self.d}) expected")
            self._X.resize((self.n + k, self.d))
            self._X[self.n:] = X.astype(self.dtype, copy=False)
            if self.hasher is not None:
                arrays = {"X": X.astype(self.dtype, copy=False)}
                if y is not None:
                    arrays["y"] = y.astype(self.y_dtype, copy=False)
                self.hasher.add(self.n, arrays)
        if y is not None:
            self._y.resize((self.n + k,))
            self._y[self.n:] = y.astype(self.y_dtype, copy=False)
        self.n += k

    def _widen_indices(self) -> None:
        """Rewrite /X/indices as int64 (once), copying what was written in blocks."""
        g, old = self._f["X"], self._indices
        wide = g.create_dataset("indices_int64", shape=old.shape, maxshape=(None,), dtype=np.int64,
                                chunks=(_CSR_CHUNK,), compression=self.compression)
        for a in range(0, old.shape[0], _WIDEN_BLOCK):
            wide[a:a + _WIDEN_BLOCK] = old[a:a + _WIDEN_BLOCK]
        del g["indices"]
        g.move("indices_int64", "indices")
        self._indices = g["indices"]
        self.index_dtype = np.dtype(np.int64)

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                target = self._f["X"]
                if self.sparse:
                    target.attrs["shape"] = np.array([self.n, self.d], dtype=np.int64)
                for key, value in self.attrs.items():
                    target.attrs[key] = value
                if self.hasher is not None:
                    self.hasher.write(self._f)
        finally:
            self._f.close()
        return self._atomic.__exit__(exc_type, exc, tb)


def write_dense(path, X, y, chunk_rows: int = DEFAULT_CHUNK_ROWS, attrs: dict | None = None) -> None:
    """Write an in-memory dense data set (dtypes as given) atomically."""
    X = np.asarray(X)
    with DataSetWriter(path, X.shape[1], X.dtype, np.asarray(y).dtype, chunk_rows=chunk_rows,
                       attrs=attrs) as w:
        w.append(X, y)


def write_csr(path, X: CSRMatrix, y, index_dtype=None, attrs: dict | None = None) -> None:
    """Write an in-memory CSR data set (dtypes as given) atomically."""
    with DataSetWriter(path, X.d, X.dtype, np.asarray(y).dtype, sparse=True,
                       index_dtype=index_dtype or X.indices.dtype, attrs=attrs) as w:
        w.append(X, y)
