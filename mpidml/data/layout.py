"""In-memory containers for the HDF5 schema (see README, "Data layout").

Dense features are plain 2-D numpy arrays. Sparse features are ``CSRMatrix``: the
rows of one shard with ``indptr`` rebased to start at 0, dtypes kept as stored.
Kernels take the raw arrays (``X.data, X.indices, X.indptr``), never this object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CSRMatrix", "LABEL_MODES"]

# binary: 0/1 (logistic); classes: integers 0..K-1 (softmax, MLP); real: any finite (least squares)
LABEL_MODES = ("binary", "classes", "real")


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

    def toarray(self) -> np.ndarray:
        """Dense copy (for tests and small data only)."""
        out = np.zeros(self.shape, dtype=self.data.dtype)
        for i in range(self.n):
            a, b = self.indptr[i], self.indptr[i + 1]
            out[i, self.indices[a:b]] += self.data[a:b]
        return out
