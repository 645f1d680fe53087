"""Per-rank loading: each rank reads only the rows it owns, validated, dtypes as stored.

A data set is one HDF5 file or many shard files (``layout.open_dataset``) forming one
global row index space. A rank's rows are a contiguous range (``shard_rows``, the
default; it may span file boundaries) or an explicit list of global rows (from
``partition.shuffled_rows`` / ``sampled_rows``). Dense rows are hyperslab reads
straight into one preallocated array; CSR rows are an ``indptr`` slice plus the
matching ``data``/``indices`` slices, ``indptr`` rebased to 0.

Two entry points:

* ``load_shard(path, size, rank, labels)`` — no MPI. Label questions that need the
  whole data set (are binary labels -1/+1? how many classes?) are answered by
  scanning ``/y`` of every file (labels only, in chunks).
* ``load_shard_collective(comm, path, labels)`` — every rank of ``comm`` calls it; the
  ranks agree on those questions from small per-rank label summaries instead, and
  every problem fails all ranks together with one message (``fail_together``).

Errors are ``MpidmlError`` naming file, dataset and row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from ..runtime.errors import MpidmlError, fail_together
from .layout import LABEL_MODES, CSRMatrix, DataSet, csr_concat, csr_take_rows, open_dataset, open_h5
from .partition import file_spans, shard_rows

__all__ = ["Shard", "load_shard", "load_shard_collective", "load_feature_block", "read_header", "RowReader",
           "LabelPlan", "label_summary", "require_labels", "decide_labels", "check_labels", "announce",
           "READ_BLOCK_BYTES"]

# Row-set reads (shuffled / sampled rows) go through blocks of about this many bytes.
READ_BLOCK_BYTES = 64 << 20


@dataclass
class Shard:
    """This rank's rows of a data set: features ``X`` (dense (n, d) array or
    ``CSRMatrix``) and labels ``y``, both with the stored dtypes.

    Contiguous loads hold global rows ``[start, stop)``; loads of an explicit row list
    have ``rows`` (global indices, in the order of ``X``) and ``start``/``stop`` spanning
    them. ``n_total`` is the number of rows of the whole data set.
    """

    path: str
    X: np.ndarray | CSRMatrix
    y: np.ndarray
    start: int
    stop: int
    n_total: int
    rows: np.ndarray | None = None
    n_classes: int | None = None        # labels="classes": K, agreed over the whole data set
    labels_mapped: bool = False         # labels="binary": stored as -1/+1, mapped to 0/1
    columns: tuple[int, int] | None = None  # load_feature_block: the feature block held
    dataset: DataSet | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def sparse(self) -> bool:
        return isinstance(self.X, CSRMatrix)


def read_header(path) -> tuple[int, int, np.dtype]:
    """(n, d, dtype) of the data set at ``path`` (file, directory or glob), validated,
    without reading rows."""
    ds = open_dataset(path)
    return ds.n, ds.d, ds.dtype


def _csr_columns(X: CSRMatrix, c0: int, c1: int) -> CSRMatrix:
    """The columns ``[c0, c1)`` of ``X``, renumbered from 0."""
    keep = (X.indices >= c0) & (X.indices < c1)
    kept_before = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(keep, out=kept_before[1:])
    indptr = kept_before[X.indptr]
    return CSRMatrix(X.data[keep], (X.indices[keep] - c0).astype(X.indices.dtype), indptr, (X.n, c1 - c0))


def _all_finite(a: np.ndarray) -> bool:
    """True if no NaN/inf in ``a``, without a per-element temporary (a float64 sum
    propagates NaN/inf; only if the sum itself is not finite is every element checked)."""
    if a.size == 0 or np.isfinite(np.add.reduce(a, axis=None, dtype=np.float64)):
        return True
    return bool(np.isfinite(a).all())


def _corrupt(path: str, name: str, a: int, b: int, exc: Exception) -> MpidmlError:
    return MpidmlError(f"{path}: reading /{name} rows {a}..{b - 1} failed, truncated or corrupt "
                       f"file ({exc})")


class RowReader:
    """Reads global row ranges of a data set, keeping its files open until ``close``.

    Values are validated as they are read (finite features; for CSR a non-decreasing
    ``indptr`` and column indices in ``[0, d)``); labels are returned as stored.
    ``chunk_cache_bytes`` sets h5py's raw-data chunk cache per dataset. ``columns``
    ``(c0, c1)``: keep only that feature block (model parallelism), renumbered from 0;
    dense reads then touch only those columns. Files with ``/checksums`` have every row
    block of a full-width read verified (``checksum.py``; a column block is not).
    """

    def __init__(self, ds: DataSet, chunk_cache_bytes: int | None = None,
                 columns: tuple[int, int] | None = None):
        self.ds = ds
        self.offsets = ds.offsets
        c0, c1 = columns if columns is not None else (0, ds.d)
        if not 0 <= c0 <= c1 <= ds.d:
            raise ValueError(f"columns {columns} outside [0, {ds.d}]")
        self.columns = (c0, c1)
        self.width = c1 - c0
        self._cache = chunk_cache_bytes
        self._files: dict[int, h5py.File] = {}
        self._sums: dict = {}          # shard index -> FileChecksums or None
        self.blocks_verified = 0
        # an unlabelled data set (no /y) reads as zero labels of this dtype (labels="none")
        self.y_dtype = ds.y_dtype if ds.labelled else np.dtype(np.float32)

    def file(self, i: int) -> h5py.File:
        """The open h5py file of shard ``i`` (opened on first use)."""
        if i not in self._files:
            self._files[i] = open_h5(self.ds.files[i].path, chunk_cache_bytes=self._cache)
        return self._files[i]

    def checksums(self, i: int):
        """Shard ``i``'s checksum table (``FileChecksums``), or None if it has none."""
        if i not in self._sums:
            from .checksum import file_checksums

            fs = self.ds.files[i]
            self._sums[i] = file_checksums(self.file(i), fs.path, fs.n, fs.sparse)
        return self._sums[i]

    def _verify(self, i: int, a: int, b: int, memory) -> None:
        """Verify the checksum blocks of shard ``i``'s rows ``[a, b)`` just read (``memory(ka,
        kb)``: a block's arrays from the read); full-width reads of files with checksums."""
        if self.width != self.ds.d or b <= a:
            return
        sums = self.checksums(i)
        if sums is not None:
            before = sums.blocks_verified
            sums.verify(a, b, memory)
            self.blocks_verified += sums.blocks_verified - before

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def where(self, row: int) -> tuple[str, int, str]:
        """``(path, local_row, suffix)`` of a global row, for messages; the suffix names the
        global row for multi-file data sets."""
        i = int(np.searchsorted(self.offsets, row, side="right")) - 1
        local = row - self.offsets[i]
        extra = f" (global row {row})" if len(self.ds.files) > 1 else ""
        return self.ds.files[i].path, local, extra

    def read(self, start: int, stop: int):
        """Rows ``[start, stop)`` (global) as ``(X, y)``."""
        spans = file_spans(self.offsets, start, stop)
        if self.ds.sparse:
            parts, ys = [], []
            for i, a, b in spans:
                X, y = self._read_csr(i, a, b)
                parts.append(X)
                ys.append(y)
            if not parts:
                return (CSRMatrix(np.zeros(0, self.ds.dtype), np.zeros(0, self.ds.files[0].index_dtype),
                                  np.zeros(1, np.int64), (0, self.width)),
                        np.zeros(0, self.y_dtype))
            return csr_concat(parts), (ys[0] if len(ys) == 1 else np.concatenate(ys))
        from .limits import check_read_size

        check_read_size(self.ds.spec, start, stop, (stop - start) * (self.width * self.ds.dtype.itemsize
                                                                     + self.y_dtype.itemsize), "dense /X and /y")
        X = np.empty((stop - start, self.width), dtype=self.ds.dtype)
        y = np.zeros(stop - start, dtype=self.y_dtype)
        o = 0
        for i, a, b in spans:
            self._read_dense(i, a, b, X[o:o + b - a], y[o:o + b - a])
            o += b - a
        return X, y

    def _read_dense(self, i, a, b, X_out, y_out) -> None:
        f, path = self.file(i), self.ds.files[i].path
        c0, c1 = self.columns
        for name, out, sel in (("X", X_out, np.s_[a:b, c0:c1]), ("y", y_out, np.s_[a:b]))[:1 + self.ds.labelled]:
            try:
                f[name].read_direct(out, sel)
            except (OSError, KeyError) as exc:
                raise _corrupt(path, name, a, b, exc) from None
        self._verify(i, a, b, lambda ka, kb: {"X": X_out[ka - a:kb - a], "y": y_out[ka - a:kb - a]})
        if not _all_finite(X_out):
            bad = ~np.isfinite(X_out).all(axis=1)
            self._bad_row(i, a + int(np.argmax(bad)), "/X has NaN or inf in")

    def _read_csr(self, i, a, b):
        f, schema = self.file(i), self.ds.files[i]
        path = schema.path
        try:
            indptr = f["X/indptr"][a:b + 1].astype(np.int64, copy=False)
        except (OSError, KeyError) as exc:
            raise _corrupt(path, "X/indptr", a, b + 1, exc) from None
        steps = np.diff(indptr)
        if (steps < 0).any():
            self._bad_row(i, a + int(np.argmax(steps < 0)), "/X/indptr decreases at")
        lo, hi = int(indptr[0]), int(indptr[-1])
        if hi > schema.nnz:
            self._bad_row(i, b - 1, f"/X/indptr points past nnz={schema.nnz} at")
        from .limits import check_read_size

        check_read_size(path, a, b, (hi - lo) * (schema.dtype.itemsize + schema.index_dtype.itemsize),
                        f"{hi - lo} nonzeros")
        try:
            data = f["X/data"][lo:hi]
            indices = f["X/indices"][lo:hi]
            y = f["y"][a:b] if self.ds.labelled else np.zeros(b - a, self.y_dtype)
        except (OSError, KeyError) as exc:
            raise _corrupt(path, "X/data, /X/indices or /y", a, b, exc) from None

        def memory(ka, kb):
            r0, r1 = ka - a, kb - a
            p0, p1 = int(indptr[r0]) - lo, int(indptr[r1]) - lo
            return {"X/data": data[p0:p1], "X/indices": indices[p0:p1], "X/indptr": indptr[r0 + 1:r1 + 1],
                    "y": y[r0:r1]}

        self._verify(i, a, b, memory)
        local_ptr = indptr - lo
        if not _all_finite(data):
            k = int(np.argmax(~np.isfinite(data)))
            self._bad_row(i, a + int(np.searchsorted(local_ptr, k, side="right")) - 1,
                          "/X/data has NaN or inf in")
        if indices.size and (indices.min() < 0 or indices.max() >= schema.d):
            bad = (indices < 0) | (indices >= schema.d)
            k = int(np.argmax(bad))
            self._bad_row(i, a + int(np.searchsorted(local_ptr, k, side="right")) - 1,
                          f"/X/indices has column {int(indices[k])} outside [0, {schema.d}) in")
        X = CSRMatrix(data, indices, local_ptr, (b - a, schema.d))
        return (X if self.width == schema.d else _csr_columns(X, *self.columns)), y

    def _bad_row(self, i: int, local_row: int, what: str):
        extra = f" (global row {self.offsets[i] + local_row})" if len(self.ds.files) > 1 else ""
        raise MpidmlError(f"{self.ds.files[i].path}: {what} row {local_row}{extra}")

    def read_rows(self, rows: np.ndarray, block_bytes: int = READ_BLOCK_BYTES):
        """Arbitrary global ``rows`` (any order, repeats allowed) as ``(X, y)`` in that
        order. Reads the data set in blocks of about ``block_bytes`` and skips blocks
        holding none of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        n = self.ds.n
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise MpidmlError(f"{self.ds.spec}: row index outside [0, {n})")
        uniq, inverse = np.unique(rows, return_inverse=True)
        row_bytes = self.ds.d * self.ds.dtype.itemsize if not self.ds.sparse else \
            max(1, (self.ds.nnz or 0) // max(n, 1)) * (self.ds.dtype.itemsize + 8) + 8
        block = max(1, block_bytes // max(row_bytes, 1))
        Xs, ys, pos = [], [], 0
        while pos < len(uniq):
            b0 = int(uniq[pos])
            b1 = min(n, b0 + block)
            end = int(np.searchsorted(uniq, b1))
            X, y = self.read(b0, b1)
            take = uniq[pos:end] - b0
            Xs.append(csr_take_rows(X, take) if self.ds.sparse else X[take])
            ys.append(y[take])
            pos = end
        # rows already sorted and distinct: the blocks are the answer (no reordering copy)
        ordered = len(uniq) == len(rows) and bool(np.all(rows[1:] > rows[:-1]))
        if self.ds.sparse:
            Xu = csr_concat(Xs) if Xs else self.read(0, 0)[0]
            X = Xu if ordered else csr_take_rows(Xu, inverse)
        else:
            Xu = np.concatenate(Xs) if Xs else np.empty((0, self.ds.d), self.ds.dtype)
            X = Xu if ordered else Xu[inverse]
        yu = np.concatenate(ys) if ys else np.empty(0, self.y_dtype)
        return X, (yu if ordered else yu[inverse])


# ---------------------------------------------------------------------------------------
# Labels. Each rank summarises its labels (a few numbers); the summaries of all ranks
# (or of a scan of every /y) decide what the data set's labels mean, identically everywhere.

_VALID = {
    "binary": (lambda y: (y == 0) | (y == 1) | (y == -1), "binary labels must be 0/1 (or -1/+1)"),
    "classes": (lambda y: (y >= 0) & (y == np.floor(y)), "class labels must be integers 0..K-1"),
    "real": (np.isfinite, "labels must be finite"),
    "none": (lambda y: np.ones(y.shape, bool), ""),
}


@dataclass(frozen=True)
class LabelPlan:
    """What the labels of a whole data set mean (same on every rank)."""

    mode: str
    map_pm1: bool = False          # binary stored as -1/+1: map -1 -> 0
    n_classes: int | None = None   # classes: K = largest label + 1


def _first(mask: np.ndarray, row0: int) -> int | None:
    return row0 + int(np.argmax(mask)) if mask.any() else None


def label_summary(y: np.ndarray, row0: int, mode: str) -> dict:
    """Facts about labels ``y`` (global rows from ``row0``) that decide the plan:
    first -1 and first 0 (binary), largest label and its row (classes). Pure."""
    out = {"neg1": None, "zero": None, "max": None, "max_row": None}
    if y.size == 0:
        return out
    if mode == "binary":
        out["neg1"], out["zero"] = _first(y == -1, row0), _first(y == 0, row0)
    elif mode == "classes":
        k = int(np.argmax(y))
        out["max"], out["max_row"] = int(y[k]), row0 + k
    return out


def _merge(summaries: list[dict]) -> dict:
    merged = {}
    for key in ("neg1", "zero"):
        rows = [s[key] for s in summaries if s[key] is not None]
        merged[key] = min(rows) if rows else None
    best = max((s for s in summaries if s["max"] is not None), key=lambda s: s["max"], default=None)
    merged["max"] = best["max"] if best else None
    return merged


def decide_labels(mode: str, summaries: list[dict], where=None, n_classes: int | None = None,
                  ds: DataSet | None = None) -> LabelPlan:
    """The ``LabelPlan`` for the data set from the label summaries of all its rows.

    Binary: -1/+1 is mapped to 0/1; a mix of -1 and 0 is an error. Classes: K is the
    largest label + 1, or ``n_classes`` if given (then a larger label is an error).
    ``where(row)`` gives ``(path, local_row, suffix)`` for error messages. With ``ds``,
    a K whose d x K model cannot fit in memory is refused naming the row of the largest
    label (``limits.check_model_size``).
    """
    m = _merge(summaries)
    if mode == "binary":
        if m["neg1"] is not None and m["zero"] is not None:
            p1, r1, x1 = where(m["neg1"])
            p0, r0, x0 = where(m["zero"])
            raise MpidmlError(f"{p1}: /y[{r1}]{x1} = -1 but {p0}: /y[{r0}]{x0} = 0; binary labels "
                              "must be all 0/1 or all -1/+1")
        return LabelPlan(mode, map_pm1=m["neg1"] is not None)
    if mode == "classes":
        k = (m["max"] + 1) if m["max"] is not None else 0
        if n_classes is not None:
            if k > n_classes:
                best = max((s for s in summaries if s["max"] is not None), key=lambda s: s["max"])
                p, r, x = where(best["max_row"])
                raise MpidmlError(f"{p}: /y[{r}]{x} = {best['max']}; class labels must be "
                                  f"integers 0..{n_classes - 1}")
            k = n_classes
        if ds is not None and m["max"] is not None:
            from .limits import check_model_size

            best = max((s for s in summaries if s["max"] is not None), key=lambda s: s["max"])
            p, r, x = where(best["max_row"])
            check_model_size(p, ds.d, k, ds.dtype.itemsize,
                             f"/y[{r}]{x} = {best['max']} is the largest class label, so K = {k} classes")
        return LabelPlan(mode, n_classes=k)
    return LabelPlan(mode)


def check_labels(y: np.ndarray, rows0, mode: str, reader: RowReader, rows=None) -> None:
    ok, rule = _VALID[mode]
    bad = ~ok(y)
    if bad.any():
        k = int(np.argmax(bad))
        path, r, x = reader.where(int(rows[k]) if rows is not None else rows0 + k)
        raise MpidmlError(f"{path}: /y[{r}]{x} = {y[k].item()!r}; {rule}")


def _apply(plan: LabelPlan, shard: Shard) -> Shard:
    if plan.map_pm1:
        shard.y = (shard.y == 1).astype(shard.y.dtype)
        shard.labels_mapped = True
    shard.n_classes = plan.n_classes
    return shard


def require_labels(ds: DataSet, labels: str) -> None:
    """Refuse an unlabelled data set (no ``/y``) unless ``labels == "none"``."""
    if labels != "none" and not ds.labelled:
        raise MpidmlError(f"{ds.files[0].path}: missing dataset /y: has no labels (an unlabelled data "
                          f"set, for predictions only); training and evaluation need {labels} labels in /y "
                          "(convert with --label-column NAME|INDEX)")


def _read_local(ds: DataSet, size: int, rank: int, labels: str, rows,
                columns=None) -> tuple[Shard, dict]:
    """This rank's rows, values validated, labels checked for the mode; and its label summary.
    ``labels="none"``: labels are not read when the data set has none (``y`` is zeros)."""
    require_labels(ds, labels)
    with RowReader(ds, columns=columns) as reader:
        if rows is None:
            start, stop = shard_rows(ds.n, size, rank) if rank >= 0 else (0, 0)
            X, y = reader.read(start, stop)
            check_labels(y, start, labels, reader)
            summary = label_summary(y, start, labels)
        else:
            rows = np.asarray(rows, dtype=np.int64)
            X, y = reader.read_rows(rows)
            check_labels(y, 0, labels, reader, rows)
            order = np.argsort(rows, kind="stable")
            summary = label_summary(y[order], 0, labels)
            for key in ("neg1", "zero", "max_row"):  # positions in sorted order -> global rows
                if summary[key] is not None:
                    summary[key] = int(rows[order][summary[key]])
            start, stop = (int(rows.min()), int(rows.max()) + 1) if rows.size else (0, 0)
    shard = Shard(path=ds.spec, X=X, y=y, start=start, stop=stop, n_total=ds.n, rows=rows, dataset=ds)
    return shard, summary


def _scan_labels(ds: DataSet, labels: str, block: int = 1 << 20) -> list[dict]:
    """Label summaries of the whole data set from its ``/y`` datasets (labels only)."""
    out = []
    with RowReader(ds) as reader:
        for i, f in enumerate(ds.files):
            y = reader.file(i)["y"]
            for a in range(0, f.n, block):
                ys = y[a:min(f.n, a + block)]
                check_labels(ys, ds.offsets[i] + a, labels, reader)
                out.append(label_summary(ys, ds.offsets[i] + a, labels))
    return out


def _check_mode(labels: str) -> None:
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")


def load_shard(path, size: int, rank: int, labels: str = "binary", rows=None,
               n_classes: int | None = None) -> Shard:
    """Read rank ``rank`` of ``size``'s rows of the data set at ``path`` (a file, a
    directory of shard files, or a glob). No MPI.

    ``rows``: explicit global rows to load (e.g. ``shuffled_rows(...)``) instead of the
    balanced contiguous range ``shard_rows(n, size, rank)``. Checks the schema, that the
    features are finite and that the labels fit ``labels`` (``binary``: 0/1, or -1/+1
    mapped to 0/1; ``classes``: integers 0..K-1; ``real``: finite); errors name the file,
    dataset and row.
    """
    _check_mode(labels)
    ds = open_dataset(path)
    shard, summary = _read_local(ds, size, rank, labels, rows)
    with RowReader(ds) as reader:
        summaries = _scan_labels(ds, labels) if labels not in ("real", "none") else [summary]
        plan = decide_labels(labels, summaries, reader.where, n_classes)
    return _apply(plan, shard)


def load_shard_collective(comm, path, labels: str = "binary", rows=None,
                          n_classes: int | None = None, log=None, what: str = "loading the data",
                          part: tuple[int, int] | None = None) -> Shard:
    """Collective over ``comm``: every rank loads its rows as ``load_shard`` does, and the
    ranks agree on the meaning of the labels from per-rank summaries (one allgather).

    This is training's loader: it also refuses a data set whose model cannot fit in memory
    (a width d or a class count K from an absurd ``shape`` attribute or label; ``limits``).
    Any rank's problem raises the same ``CollectiveError`` on all ranks. Rank 0 reports
    through ``log`` (once) that -1/+1 labels were mapped, and warns when some ranks have
    no rows (not an error: they contribute weight 0).
    """
    _check_mode(labels)
    size, rank = comm.Get_size(), comm.Get_rank()
    if part is not None:      # (parts, index): split over ``parts`` ranks; index -1 loads no rows
        size, rank = part

    def local():
        ds = open_dataset(path, check_sizes=True)
        return _read_local(ds, size, rank, labels, rows)

    shard, summary = fail_together(comm, what, local)
    summaries = comm.allgather(summary)

    def plan():
        with RowReader(shard.dataset) as reader:
            return decide_labels(labels, summaries, reader.where, n_classes, reader.ds)

    label_plan = fail_together(comm, f"{what} (labels)", plan)
    _apply(label_plan, shard)
    if rank == 0:
        announce(log, shard.dataset, label_plan, size if rows is None else 0)
    return shard


def announce(log, ds: DataSet, plan: LabelPlan, size: int) -> None:
    """Rank 0's notes on a loaded data set: -1/+1 labels mapped; ranks without rows."""
    if log is None:
        return
    if plan.map_pm1:
        log(f"{ds.spec}: binary labels are -1/+1; mapped to 0/1 (-1 -> 0, +1 -> 1)")
    if size > ds.n:
        log(f"warning: {size} ranks but {ds.spec} has only {ds.n} rows: "
            f"{size - ds.n} rank(s) hold no rows and contribute weight 0")


def load_feature_block(path, size: int, rank: int, labels: str = "binary") -> Shard:
    """Model parallelism: every row of the data set, but only the feature columns
    ``feature_columns(d, size, rank)`` (renumbered from 0; ``Shard.columns`` says which).
    Dense reads touch only those columns; CSR reads every nonzero and keeps the block's.
    No MPI; labels as in ``load_shard``."""
    from .partition import feature_columns

    _check_mode(labels)
    ds = open_dataset(path)
    columns = feature_columns(ds.d, size, rank)
    shard, summary = _read_local(ds, 1, 0, labels, None, columns)
    with RowReader(ds) as reader:
        plan = decide_labels(labels, [summary], reader.where)
    shard.columns = columns
    return _apply(plan, shard)
