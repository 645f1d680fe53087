"""Small random data sets for tests, written with mpidml's writer (dense and CSR,
one file or several shard files). Used by pure tests and by MPI programs."""

from __future__ import annotations

import os

import numpy as np

from mpidml.data.layout import CSRMatrix
from mpidml.data.writer import write_csr, write_dense


def random_csr(n: int, d: int, rng, dtype=np.float32, density: float = 0.2, index_dtype=np.int32):
    """Random CSR with some empty rows; values are nonzero so toarray() is unambiguous."""
    mask = rng.random((n, d)) < density
    if n:
        mask[rng.integers(0, n)] = False  # at least one empty row
    dense = np.where(mask, rng.standard_normal((n, d)) + 3.0, 0).astype(dtype)
    rows, cols = np.nonzero(dense)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return CSRMatrix(dense[rows, cols], cols.astype(index_dtype), indptr, (n, d)), dense


def make_set(directory, name: str, sizes, d: int = 5, sparse: bool = False, dtype=np.float32,
             seed: int = 0, labels: str = "binary"):
    """Write ``len(sizes)`` shard files (one file if ``sizes`` is an int) with
    rows ``sizes[i]``; return (spec, X dense reference, y reference)."""
    rng = np.random.default_rng(seed)
    single = isinstance(sizes, int)
    sizes = [sizes] if single else list(sizes)
    Xs, ys = [], []
    os.makedirs(directory, exist_ok=True)
    folder = directory if single else os.path.join(directory, name)
    os.makedirs(folder, exist_ok=True)
    for i, n in enumerate(sizes):
        y = (rng.integers(0, 2, n) if labels == "binary" else rng.integers(0, 4, n)).astype(np.float32)
        path = os.path.join(folder, f"{name}.h5" if single else f"part-{i:05d}.h5")
        if sparse:
            csr, dense = random_csr(n, d, rng, dtype)
            write_csr(path, csr, y)
        else:
            dense = rng.standard_normal((n, d)).astype(dtype)
            write_dense(path, dense, y)
        Xs.append(dense)
        ys.append(y)
    spec = path if single else folder
    return spec, np.concatenate(Xs), np.concatenate(ys)


def sparse_binary(n: int, d: int, density: float, seed: int):
    """A learnable sparse binary problem: (CSRMatrix float32, its dense copy, 0/1 labels
    drawn from a logistic teacher over the nonzeros)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n, d)) < density
    dense = np.where(mask, rng.standard_normal((n, d)), 0.0).astype(np.float32)
    w = rng.standard_normal(d) * 1.5 / np.sqrt(density * d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(dense @ w + 0.2)))).astype(np.float32)
    rows, cols = np.nonzero(dense)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return CSRMatrix(dense[rows, cols], cols.astype(np.int32), indptr, (n, d)), dense, y
