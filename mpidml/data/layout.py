"""The HDF5 schema (see docs/data.md, "Data layout"): containers, header validation, shard sets.

Schema of one file:

* dense: dataset ``/X`` (n, d) float32 or float64; ``/y`` (n,) numeric labels;
* sparse CSR: group ``/X`` with datasets ``data`` (nnz,) float32/float64, ``indices``
  (nnz,) int32/int64, ``indptr`` (n + 1,) integer (``indptr[0] == 0``,
  ``indptr[n] == nnz``) and attribute ``shape = (n, d)``; ``/y`` as above.

A data set is one such file or many shard files with the same schema (a directory
of ``*.h5``/``*.hdf5`` files or a glob, taken in sorted name order): their rows form
one global row index space, file after file.

Dense features are plain 2-D numpy arrays in memory. Sparse features are
``CSRMatrix``: the rows of one shard with ``indptr`` rebased to start at 0, dtypes
kept as stored. Kernels take the raw arrays (``X.data, X.indices, X.indptr``).

Every problem is an ``MpidmlError`` naming the file and the dataset.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..runtime.errors import MpidmlError

__all__ = ["CSRMatrix", "LABEL_MODES", "FileSchema", "DataSet", "open_h5", "read_schema",
           "resolve_sources", "input_files", "first_unwritten", "open_dataset", "csr_take_rows", "csr_concat"]

# binary: 0/1 (logistic; -1/+1 accepted and mapped); classes: integers 0..K-1 (softmax, MLP);
# real: any finite (least squares); none: labels not used (predictions; /y may be absent)
LABEL_MODES = ("binary", "classes", "real", "none")

_FLOAT_DTYPES = (np.float32, np.float64)
_INDEX_DTYPES = (np.int32, np.int64)
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class CSRMatrix:
    """Compressed sparse rows: row i's nonzeros are data/indices[indptr[i]:indptr[i+1]]."""

    data: np.ndarray      # (nnz,) float32 or float64
    indices: np.ndarray   # (nnz,) int32 or int64, column of each nonzero
    indptr: np.ndarray    # (n + 1,) int64, indptr[0] == 0
    shape: tuple[int, int]

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def d(self) -> int:
        return self.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes

    def toarray(self) -> np.ndarray:
        """Dense copy (for tests and small data only)."""
        out = np.zeros(self.shape, dtype=self.data.dtype)
        for i in range(self.n):
            a, b = self.indptr[i], self.indptr[i + 1]
            out[i, self.indices[a:b]] += self.data[a:b]
        return out


def csr_take_rows(X: CSRMatrix, rows: np.ndarray) -> CSRMatrix:
    """Rows ``rows`` (any order, repeats allowed) of ``X`` as a new CSRMatrix."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = X.indptr[rows + 1] - X.indptr[rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # position of every output nonzero in the input arrays
    src = np.repeat(X.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
    return CSRMatrix(X.data[src], X.indices[src], indptr, (len(rows), X.d))


def csr_concat(parts: list[CSRMatrix]) -> CSRMatrix:
    """Row-wise concatenation of CSR blocks with the same d and dtypes."""
    if len(parts) == 1:
        return parts[0]
    indptr = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for p in parts:
        indptr.append(p.indptr[1:] + offset)
        offset += p.nnz
    return CSRMatrix(np.concatenate([p.data for p in parts]),
                     np.concatenate([p.indices for p in parts]),
                     np.concatenate(indptr), (sum(p.n for p in parts), parts[0].d))


@dataclass(frozen=True)
class FileSchema:
    """Validated header of one file: shape, dtypes, layout; no rows read."""

    path: str
    n: int
    d: int
    dtype: np.dtype              # of X (dense) or X/data (CSR)
    y_dtype: np.dtype | None     # None: no /y (unlabelled)
    sparse: bool
    index_dtype: np.dtype | None = None   # CSR column indices
    nnz: int | None = None
    chunks: tuple | None = None           # HDF5 chunk shape of /X (or /X/data)

    def layout(self) -> str:
        """What must agree between the shards of one data set (d, dtypes, dense/CSR)."""
        kind = f"CSR (indices {self.index_dtype})" if self.sparse else "dense"
        return f"{kind} X with d={self.d} {self.dtype}, " + (f"y {self.y_dtype}" if self.y_dtype else "no /y")


def open_h5(path: str, chunk_cache_bytes: int | None = None) -> h5py.File:
    """Open ``path`` read-only, with errors that say what is wrong with the file.
    ``chunk_cache_bytes``: h5py's raw-data chunk cache per open dataset (default 1 MiB).

    A file another process is writing is refused, naming the writer: HDF5 writers hold an
    exclusive ``flock`` on the file (probed here, then HDF5's own shared lock is held
    while the file is open, so no locking writer can start meanwhile), and SWMR writers
    mark the superblock. On file systems without ``flock`` the lock is skipped
    (``locking="best-effort"``); ``HDF5_USE_FILE_LOCKING=FALSE`` turns HDF5's lock off,
    not the probe."""
    if not os.path.exists(path):
        raise MpidmlError(f"{path}: no such file")
    if os.path.isdir(path):
        raise MpidmlError(f"{path}: is a directory, not an HDF5 file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
            _refuse_locked_writer(fh, path)
    except PermissionError:
        raise MpidmlError(f"{path}: permission denied (file not readable)") from None
    except OSError as exc:
        raise MpidmlError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        kw = {} if chunk_cache_bytes is None else {"rdcc_nbytes": int(chunk_cache_bytes)}
        return h5py.File(path, "r", locking="best-effort", **kw)
    except OSError as exc:
        text = str(exc)
        if "unable to lock file" in text:   # a writer started between the probe and the open
            raise MpidmlError(f"{path}: is being written by another process ({_lock_holder(path)} holds "
                              "an exclusive HDF5 file lock); wait for it to finish") from None
        if "already open for write" in text:
            raise MpidmlError(f"{path}: is open for writing by another process (SWMR or latest-format "
                              "writer), or its writer died before closing it; wait for the writer, or "
                              "if none is left run `h5clear -s FILE` and check the data") from None
        if not magic:
            raise MpidmlError(f"{path}: empty file (0 bytes), not HDF5") from None
        if magic != b"\x89HDF\r\n\x1a\n":  # (a file with an HDF5 user block opens above)
            raise MpidmlError(f"{path}: not an HDF5 file (corrupt, or another format: "
                              "convert it with `python -m mpidml.data convert`)") from None
        raise MpidmlError(f"{path}: cannot open as HDF5, truncated or corrupt file ({exc})") from None


def _refuse_locked_writer(fh, path: str) -> None:
    """Raise if another process holds an exclusive ``flock`` on the open file ``fh`` (what
    an HDF5 writer holds while the file is open). Unsupported locks: no verdict."""
    import errno
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise MpidmlError(f"{path}: is being written by another process ({_lock_holder(path)} holds "
                              "an exclusive HDF5 file lock); wait for it to finish") from None
        return   # ENOLCK / EOPNOTSUPP / ENOSYS: a file system without flock
    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _lock_holder(path: str) -> str:
    """The process holding an exclusive lock on ``path``, from /proc/locks (Linux, this
    node), e.g. ``pid 4242 (python make_data.py)``; ``a process`` when it cannot tell."""
    try:
        st = os.stat(path)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as fh:
            for line in fh:
                f = line.split()
                if len(f) >= 6 and f[1] in ("FLOCK", "POSIX", "OFDLCK") and f[3] == "WRITE" and f[5] == key:
                    pid = f[4]
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as c:
                            cmd = c.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    except OSError:
                        cmd = ""
                    return f"pid {pid}" + (f" ({cmd[:80]})" if cmd else "") + " on this node"
    except OSError:
        pass
    return "a process (on another node, or not visible here)"


def first_unwritten(ds: h5py.Dataset) -> tuple[int, int, int, int] | None:
    """``(a, b, missing, total)``: the first range ``[a, b)`` along axis 0 of dataset
    ``ds`` whose storage was never allocated (reads give fill values), with the count of
    missing and expected chunks (0, 0 for contiguous storage); ``None`` if all storage exists. Contiguous layout: all or
    nothing (``get_storage_size``); chunked: the chunk index (``get_num_chunks``, and only
    when chunks are missing a walk over them). Compact/virtual/external: not checked."""
    n = ds.shape[0] if ds.shape else 0
    if ds.size == 0:
        return None
    layout = ds.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        return (0, n, 0, 0) if ds.id.get_storage_size() == 0 else None
    if layout != h5py.h5d.CHUNKED:
        return None
    grid = [-(-s // c) for s, c in zip(ds.shape, ds.chunks)]
    total = int(np.prod(grid))
    have = ds.id.get_num_chunks()
    if have >= total:
        return None
    per_block = total // grid[0]          # chunks per block of ds.chunks[0] rows
    count = np.zeros(grid[0], np.int64)

    def seen(info):
        count[info.chunk_offset[0] // ds.chunks[0]] += 1

    if hasattr(ds.id, "chunk_iter"):
        ds.id.chunk_iter(seen)
    else:
        for k in range(have):
            seen(ds.id.get_chunk_info(k))
    missing = np.flatnonzero(count < per_block)
    first = last = int(missing[0])
    while last + 1 < grid[0] and count[last + 1] < per_block:
        last += 1
    rows = ds.chunks[0]
    return first * rows, min(n, (last + 1) * rows), total - have, total


def _refuse_unwritten(f: h5py.File, path: str, name: str, indptr: h5py.Dataset | None = None) -> None:
    """Raise naming the first unwritten row range of dataset ``name``; ``indptr`` (CSR
    ``data``/``indices``): translate the nonzero range to rows."""
    gap = first_unwritten(f[name])
    if gap is None:
        return
    a, b, missing, total = gap
    if indptr is not None:   # nonzeros [a, b) -> the rows holding them
        ptr = _read_small(indptr, slice(None), path).astype(np.int64)
        a = int(np.searchsorted(ptr, a, side="right")) - 1
        b = int(np.searchsorted(ptr, b - 1, side="right"))
        what = "nonzeros of rows"
    elif name == "X/indptr":
        what, b = "offsets of rows", max(a + 1, b - 1)
    else:
        what = "rows"
    storage = f"{missing} of {total} storage chunks unallocated" if total else "no storage allocated"
    raise MpidmlError(f"{path}: /{name} {what} {a}..{b - 1} were never written ({storage}: reads "
                      "would give fill values); the file is "
                      "incomplete: its writer is still running or did not finish")


def _dataset(f: h5py.File, path: str, name: str, what: str) -> h5py.Dataset:
    if name not in f:
        raise MpidmlError(f"{path}: missing dataset /{name} ({what})")
    try:
        obj = f[name]
    except (KeyError, OSError) as exc:
        raise MpidmlError(f"{path}: cannot read /{name}, corrupt file ({exc})") from None
    if not isinstance(obj, h5py.Dataset):
        raise MpidmlError(f"{path}: /{name} must be a dataset ({what})")
    return obj


def _read_small(ds: h5py.Dataset, sel, path: str):
    try:
        return ds[sel]
    except OSError as exc:
        raise MpidmlError(f"{path}: reading {ds.name} failed, truncated or corrupt file ({exc})") from None


def read_schema(f: h5py.File, path: str) -> FileSchema:
    """Validate the structure of an open file (datasets, shapes, dtypes); read no rows."""
    if "X" not in f:
        raise MpidmlError(f"{path}: missing dataset /X (features)")
    y = _dataset(f, path, "y", "labels, shape (n,)") if "y" in f else None   # None: unlabelled
    if y is not None and y.ndim != 1:
        raise MpidmlError(f"{path}: /y must be 1-D (n,), has shape {y.shape}")
    if y is not None and y.dtype.kind not in "iuf":
        raise MpidmlError(f"{path}: /y has dtype {y.dtype}; a numeric dtype is expected")
    y_dtype = y.dtype if y is not None else None
    if isinstance(f["X"], h5py.Group):
        g = f["X"]
        need = "CSR group /X needs data, indices, indptr and attribute shape"
        data = _dataset(f, path, "X/data", need)
        indices = _dataset(f, path, "X/indices", need)
        indptr = _dataset(f, path, "X/indptr", need)
        if "shape" not in g.attrs:
            raise MpidmlError(f"{path}: CSR group /X has no 'shape' attribute ((n, d) expected)")
        shape = tuple(int(s) for s in np.asarray(g.attrs["shape"]).ravel())
        if len(shape) != 2 or min(shape) < 0:
            raise MpidmlError(f"{path}: /X attribute shape = {shape}; (n, d) expected")
        n, d = shape
        if data.ndim != 1 or data.dtype.type not in _FLOAT_DTYPES:
            raise MpidmlError(f"{path}: /X/data must be 1-D float32 or float64, "
                              f"has shape {data.shape} dtype {data.dtype}")
        if indices.ndim != 1 or indices.dtype.type not in _INDEX_DTYPES:
            raise MpidmlError(f"{path}: /X/indices must be 1-D int32 or int64, "
                              f"has shape {indices.shape} dtype {indices.dtype}")
        if indices.shape != data.shape:
            raise MpidmlError(f"{path}: /X/data has {data.shape[0]} entries but /X/indices has "
                              f"{indices.shape[0]}")
        if indptr.ndim != 1 or indptr.dtype.kind not in "iu":
            raise MpidmlError(f"{path}: /X/indptr must be a 1-D integer dataset, has dtype {indptr.dtype}")
        if indptr.shape[0] != n + 1:
            raise MpidmlError(f"{path}: /X/indptr has {indptr.shape[0]} entries; shape attribute "
                              f"says n={n}, so {n + 1} expected")
        ends = _read_small(indptr, [0, n] if n else [0], path)
        nnz = data.shape[0]
        if ends[0] != 0 or ends[-1] != nnz:
            raise MpidmlError(f"{path}: /X/indptr must start at 0 and end at nnz={nnz}, "
                              f"is {int(ends[0])}..{int(ends[-1])}")
        schema = FileSchema(path, n, d, data.dtype, y_dtype, True, indices.dtype, nnz, data.chunks)
        _refuse_unwritten(f, path, "X/indptr")
        for name in ("X/data", "X/indices"):
            _refuse_unwritten(f, path, name, indptr)
    else:
        X = f["X"]
        if not isinstance(X, h5py.Dataset) or X.ndim != 2:
            raise MpidmlError(f"{path}: /X must be 2-D (n, d), has shape {getattr(X, 'shape', None)}")
        if X.dtype.type not in _FLOAT_DTYPES:
            raise MpidmlError(f"{path}: /X has dtype {X.dtype}; float32 or float64 expected")
        schema = FileSchema(path, X.shape[0], X.shape[1], X.dtype, y_dtype, False, chunks=X.chunks)
        _refuse_unwritten(f, path, "X")
    if y is not None and y.shape[0] != schema.n:
        raise MpidmlError(f"{path}: /X has {schema.n} rows but /y has {y.shape[0]}")
    if schema.n == 0:
        raise MpidmlError(f"{path}: /X has zero rows (an empty file is not a data set)")
    if y is not None:
        _refuse_unwritten(f, path, "y")
    return schema


def resolve_sources(spec) -> list[str]:
    """The shard files of a data set: a file, a directory (its ``*.h5``/``*.hdf5`` files),
    a glob pattern, or a list of those; sorted by name within a directory or glob."""
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in resolve_sources(s)]
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        files = sorted(os.path.join(spec, e) for e in os.listdir(spec)
                       if e.endswith(H5_SUFFIXES) and not e.startswith("."))
        if not files:
            raise MpidmlError(f"{spec}: directory has no *.h5 / *.hdf5 shard files")
        return files
    if glob.has_magic(spec) and not os.path.exists(spec):
        files = sorted(p for p in glob.glob(spec) if not os.path.isdir(p))
        if not files:
            raise MpidmlError(f"{spec}: no files match this pattern")
        return files
    return [spec]


def input_files(*named) -> list[tuple[str, str]]:
    """``(flag, file)`` for every file of every ``(flag, spec)`` given (a data set spec as
    ``resolve_sources`` takes, or a plain file), for ``runtime.outputs.check_outputs``;
    ``None`` specs and specs that do not resolve are skipped (loading reports those)."""
    out = []
    for flag, spec in named:
        if spec is None:
            continue
        try:
            out += [(flag, p) for p in resolve_sources(spec)]
        except MpidmlError:
            pass
    return out


@dataclass(frozen=True)
class DataSet:
    """One or more shard files with one schema: a global row index space."""

    spec: str
    files: tuple[FileSchema, ...]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def offsets(self) -> list[int]:
        """Global index of each file's first row, plus n at the end."""
        out = [0]
        for f in self.files:
            out.append(out[-1] + f.n)
        return out

    @property
    def n(self) -> int:
        return sum(f.n for f in self.files)

    @property
    def d(self) -> int:
        return self.files[0].d

    @property
    def dtype(self) -> np.dtype:
        return self.files[0].dtype

    @property
    def y_dtype(self) -> np.dtype:
        return self.files[0].y_dtype

    @property
    def sparse(self) -> bool:
        return self.files[0].sparse

    @property
    def labelled(self) -> bool:
        """Whether the files have ``/y`` (all shards agree: it is part of the layout)."""
        return self.files[0].y_dtype is not None

    @property
    def nnz(self) -> int | None:
        return sum(f.nnz for f in self.files) if self.sparse else None

    def describe(self) -> str:
        kind = f"CSR, nnz {self.nnz}" if self.sparse else "dense"
        where = self.spec if len(self.files) == 1 else f"{self.spec} ({len(self.files)} shard files)"
        return f"{where}: {self.n} x {self.d} {self.dtype} ({kind})"


def open_dataset(spec, check_sizes: bool = False) -> DataSet:
    """Resolve ``spec`` to its shard files and validate every header; all shards must
    share the layout of the first (an error names the first file that differs).
    ``check_sizes`` (training's loaders): refuse a width ``d`` whose model cannot fit in
    memory (``limits.check_model_size``); reading such data is fine, training on it not."""
    paths = resolve_sources(spec)
    schemas = []
    for path in paths:
        with open_h5(path) as f:
            schemas.append(read_schema(f, path))
    first = schemas[0]
    for s in schemas[1:]:
        if s.layout() != first.layout():
            raise MpidmlError(f"{s.path}: shard schema differs from {first.path}: "
                              f"{s.layout()} vs {first.layout()}")
    if check_sizes:
        _check_width(first)
    name = spec if isinstance(spec, str) else ", ".join(map(str, spec))
    return DataSet(name, tuple(schemas))


def _check_width(schema: FileSchema) -> None:
    """The model over ``d`` features must fit in memory; for CSR the message names the
    largest column actually present (a wrong ``shape`` attribute is the usual cause)."""
    from .limits import check_model_size, largest_column

    def why():
        if not schema.sparse:
            return f"/X has d = {schema.d} columns"
        with open_h5(schema.path) as f:
            col, row = largest_column(f, schema.path)
        present = f"the largest column index present is {col}, in row {row}" if col >= 0 else "no nonzeros"
        return f"/X attribute shape says d = {schema.d} columns ({present})"

    check_model_size(schema.path, schema.d, 1, schema.dtype.itemsize, why)
