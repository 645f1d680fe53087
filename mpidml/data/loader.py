"""Per-rank loading: each rank opens the file read-only and reads only its rows.

The row range is ``shard_rows(n, size, rank)`` (balanced to within one row, no
overlap, nothing dropped); h5py reads exactly that hyperslab, keeping the stored
dtype. Problems are raised as ``MpidmlError`` naming the file and dataset; callers
run loading under ``fail_together`` so every rank fails with the same message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..runtime.errors import MpidmlError
from .layout import LABEL_MODES
from .partition import shard_rows

__all__ = ["Shard", "load_shard", "read_header"]

_FLOAT_DTYPES = (np.float32, np.float64)


@dataclass
class Shard:
    """Rows ``[start, stop)`` of ``path``: features ``X`` (stop-start, d) and labels ``y``."""

    path: str
    X: np.ndarray
    y: np.ndarray
    start: int
    stop: int
    n_total: int

    @property
    def n(self) -> int:
        return self.stop - self.start

    @property
    def d(self) -> int:
        return self.X.shape[1]


def _open(path: str) -> h5py.File:
    if not os.path.exists(path):
        raise MpidmlError(f"{path}: no such file")
    try:
        # locking=False: read-only opens on parallel file systems without flock.
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise MpidmlError(f"{path}: cannot open as HDF5 ({exc})") from None


def _datasets(f: h5py.File, path: str) -> tuple[h5py.Dataset, h5py.Dataset]:
    for name in ("X", "y"):
        if name not in f:
            raise MpidmlError(f"{path}: missing dataset /{name}")
    X, y = f["X"], f["y"]
    if isinstance(X, h5py.Group):
        raise MpidmlError(f"{path}: /X is a sparse (CSR) group; this model needs dense /X")
    if X.ndim != 2:
        raise MpidmlError(f"{path}: /X must be 2-D (n, d), has shape {X.shape}")
    if X.dtype.type not in _FLOAT_DTYPES:
        raise MpidmlError(f"{path}: /X has dtype {X.dtype}; float32 or float64 expected")
    if not isinstance(y, h5py.Dataset) or y.ndim != 1:
        raise MpidmlError(f"{path}: /y must be a 1-D dataset")
    if y.shape[0] != X.shape[0]:
        raise MpidmlError(f"{path}: /X has {X.shape[0]} rows but /y has {y.shape[0]}")
    return X, y


def read_header(path: str) -> tuple[int, int, np.dtype]:
    """(n, d, dtype) of the dense data set in ``path``, validated, without reading rows."""
    with _open(path) as f:
        X, _ = _datasets(f, path)
        return X.shape[0], X.shape[1], X.dtype


def load_shard(path: str, size: int, rank: int, labels: str = "binary") -> Shard:
    """Read rank ``rank`` of ``size``'s balanced row range of ``path``.

    Checks the schema, that the shard's features are finite and that its labels fit
    ``labels`` (``binary``: 0/1; ``classes``: integers >= 0; ``real``: finite); errors
    name the file, dataset and global row.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    with _open(path) as f:
        X, y = _datasets(f, path)
        n = X.shape[0]
        start, stop = shard_rows(n, size, rank)
        Xs = X[start:stop]
        ys = y[start:stop]
    bad = ~np.isfinite(Xs).all(axis=1)
    if bad.any():
        row = start + int(np.argmax(bad))
        raise MpidmlError(f"{path}: /X has NaN or inf in row {row} (rank {rank}'s rows {start}..{stop - 1})")
    _check_labels(ys, labels, path, start)
    return Shard(path=path, X=Xs, y=ys, start=start, stop=stop, n_total=n)


_LABEL_RULES = {
    "binary": (lambda y: (y == 0) | (y == 1), "binary labels must be 0 or 1"),
    "classes": (lambda y: (y >= 0) & (y == np.floor(y)), "class labels must be integers 0..K-1"),
    "real": (np.isfinite, "labels must be finite"),
}


def _check_labels(ys: np.ndarray, labels: str, path: str, start: int) -> None:
    ok, rule = _LABEL_RULES[labels]
    bad = ~ok(ys)
    if bad.any():
        row = start + int(np.argmax(bad))
        raise MpidmlError(f"{path}: /y[{row}] = {ys[row - start]!r}; {rule}")
