"""Synthetic data sets written as HDF5 in the mpidml schema (see docs/data.md, "Data layout").

``make_binary_dense``: a learnable, non-separable binary classification set. A fixed
random teacher (w*, b*) labels Gaussian features with y ~ Bernoulli(σ(x·w* + b*)),
so logistic regression is the right model and the optimum has a finite loss.
Train and test files share the teacher and use independent sample streams.

Also, as block generators streamed to disk by ``write_blocks`` (one file or shards):
``multiclass_dense_blocks`` (random teacher network; softmax / MLP) and
``clicklog_csr_blocks`` (sparse click-log rows, Zipf feature popularity, hashed space).
"""

from __future__ import annotations

import h5py
import numpy as np

from ..runtime.atomic import atomic_path

__all__ = ["make_binary_dense", "binary_dense_blocks", "multiclass_dense_blocks",
           "clicklog_csr_blocks", "hashed_feature", "write_blocks"]

_CHUNK_ROWS = 8192


def make_binary_dense(path, n: int, d: int, seed: int = 0, dtype=np.float32,
                      stream: int = 0, margin_scale: float = 2.0) -> None:
    """Write an ``n × d`` binary set to ``path`` atomically (temp file + rename).

    ``stream`` selects an independent sample stream with the same teacher (0 = train,
    1 = test). The teacher's margins have standard deviation ``margin_scale``.
    """
    dtype = np.dtype(dtype)
    teacher_ss, *streams = np.random.SeedSequence(seed).spawn(1 + max(stream + 1, 2))
    teacher = np.random.default_rng(teacher_ss)
    w_star = teacher.standard_normal(d) * (margin_scale / np.sqrt(d))
    b_star = 0.25
    rng = np.random.default_rng(streams[stream])
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            chunk_rows = max(1, min(n, _CHUNK_ROWS))
            X = f.create_dataset("X", shape=(n, d), dtype=dtype, chunks=(chunk_rows, d) if n else None)
            y = f.create_dataset("y", shape=(n,), dtype=np.float32,
                                 chunks=(chunk_rows,) if n else None)
            for start in range(0, n, _CHUNK_ROWS):
                stop = min(n, start + _CHUNK_ROWS)
                xb = rng.standard_normal((stop - start, d))
                prob = 1.0 / (1.0 + np.exp(-(xb @ w_star + b_star)))
                X[start:stop] = xb.astype(dtype)
                y[start:stop] = (rng.random(stop - start) < prob).astype(np.float32)
            X.attrs["generator"] = "mpidml.data.synth.make_binary_dense"
            X.attrs["seed"] = seed
            X.attrs["stream"] = stream


# ---------------------------------------------------------------------------------------
# Block generators: each yields (X block, y block) of at most ``block_rows`` rows, so any
# size streams to disk (``write_blocks``, one file or balanced shard files).


def multiclass_dense_blocks(n: int, d: int, k: int, seed: int = 0, dtype=np.float32,
                            stream: int = 0, hidden: int = 32, temperature: float = 0.5,
                            block_rows: int = _CHUNK_ROWS):
    """Multi-class rows from a random teacher network (for softmax and MLP models).

    Teacher: logits = tanh(x W1 + b1) W2 + b2 with Gaussian weights, then
    y ~ Categorical(softmax(logits / temperature)); features x ~ N(0, I). Labels are
    int64 in 0..k-1. A linear model cannot fit the teacher exactly; an MLP can do better.
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    dtype = np.dtype(dtype)
    teacher_ss, *streams = np.random.SeedSequence(seed).spawn(1 + max(stream + 1, 2))
    t = np.random.default_rng(teacher_ss)
    W1 = t.standard_normal((d, hidden)) * (2.0 / np.sqrt(d))
    b1 = t.standard_normal(hidden) * 0.5
    W2 = t.standard_normal((hidden, k)) / np.sqrt(hidden)
    b2 = t.standard_normal(k) * 0.2
    rng = np.random.default_rng(streams[stream])
    for start in range(0, n, block_rows):
        m = min(n, start + block_rows) - start
        x = rng.standard_normal((m, d))
        logits = (np.tanh(x @ W1 + b1) @ W2 + b2) / temperature
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        # inverse-CDF sampling of one class per row
        y = (rng.random((m, 1)) > np.cumsum(prob, axis=1)).sum(axis=1)
        yield x.astype(dtype), np.minimum(y, k - 1).astype(np.int64)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hashed_feature(raw_ids: np.ndarray, d: int) -> np.ndarray:
    """Feature hashing: map raw feature ids (any non-negative ints) into ``[0, d)``."""
    with np.errstate(over="ignore"):
        h = raw_ids.astype(np.uint64) * _GOLDEN
    return ((h >> np.uint64(17)) % np.uint64(d)).astype(np.int64)


def clicklog_csr_blocks(n: int, d: int = 1 << 20, nnz_per_row: float = 20.0, zipf_a: float = 1.2,
                        seed: int = 0, dtype=np.float32, stream: int = 0, ctr: float = 0.2,
                        block_rows: int = _CHUNK_ROWS):
    """Sparse click-log rows (CSR): binary indicator features whose raw ids follow a Zipf
    law (a few very popular, a long tail), hashed into ``d`` columns; about
    ``nnz_per_row`` distinct features per row. Labels 0/1 ("click") from a sparse
    logistic teacher over the hashed columns with a bias giving a mean click rate near
    ``ctr``. Column indices int32 when d < 2**31.
    """
    from .layout import CSRMatrix

    dtype = np.dtype(dtype)
    index_dtype = np.int32 if d < 2**31 else np.int64
    teacher_ss, *streams = np.random.SeedSequence(seed).spawn(1 + max(stream + 1, 2))
    t = np.random.default_rng(teacher_ss)
    w = t.standard_normal(d).astype(np.float32) * (1.5 / np.sqrt(nnz_per_row))
    bias = float(np.log(ctr / (1 - ctr)))
    rng = np.random.default_rng(streams[stream])
    for start in range(0, n, block_rows):
        m = min(n, start + block_rows) - start
        counts = 1 + rng.poisson(max(nnz_per_row - 1, 0), m)
        rows = np.repeat(np.arange(m, dtype=np.int64), counts)
        cols = hashed_feature(rng.zipf(zipf_a, counts.sum()), d)
        keys = np.unique(rows * d + cols)  # sorted by row then column; duplicates dropped
        rows, cols = keys // d, keys % d
        indptr = np.zeros(m + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
        margin = np.add.reduceat(w[cols], indptr[:-1]) if len(cols) else np.zeros(m)
        margin = np.where(np.diff(indptr) > 0, margin, 0.0) + bias
        y = (rng.random(m) < 1.0 / (1.0 + np.exp(-margin))).astype(np.float32)
        yield CSRMatrix(np.ones(len(cols), dtype), cols.astype(index_dtype), indptr, (m, d)), y


def binary_dense_blocks(n: int, d: int, seed: int = 0, dtype=np.float32, stream: int = 0,
                        margin_scale: float = 2.0, block_rows: int = _CHUNK_ROWS):
    """The rows of ``make_binary_dense`` as blocks (same teacher, same values)."""
    dtype = np.dtype(dtype)
    teacher_ss, *streams = np.random.SeedSequence(seed).spawn(1 + max(stream + 1, 2))
    teacher = np.random.default_rng(teacher_ss)
    w_star = teacher.standard_normal(d) * (margin_scale / np.sqrt(d))
    rng = np.random.default_rng(streams[stream])
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(n, start + _CHUNK_ROWS)
        xb = rng.standard_normal((stop - start, d))
        prob = 1.0 / (1.0 + np.exp(-(xb @ w_star + 0.25)))
        yield xb.astype(dtype), (rng.random(stop - start) < prob).astype(np.float32)


def write_blocks(path, blocks, n: int, d: int, dtype, y_dtype, sparse: bool = False,
                 index_dtype=np.int32, shards: int = 1, attrs: dict | None = None,
                 checksums: bool = False) -> list[str]:
    """Stream ``blocks`` (n rows in total) into ``path`` (one file), or into ``shards``
    balanced shard files ``path/part-00000.h5`` ...; each file is written atomically,
    with content checksums if ``checksums`` (the CLI's default). Returns the paths written."""
    import os

    from .layout import csr_take_rows
    from .partition import block_counts
    from .writer import DataSetWriter

    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    paths = [path] if shards == 1 else [os.path.join(path, f"part-{i:05d}.h5") for i in range(shards)]
    from ..runtime.outputs import check_output
    for out in paths:
        check_output(out, "data", "output")
    sizes = block_counts(n, shards)
    blocks = iter(blocks)
    pending = None  # rest of a block that straddles two files
    for out, size in zip(paths, sizes):
        with DataSetWriter(out, d, dtype, y_dtype, sparse=sparse, index_dtype=index_dtype,
                           attrs=attrs, checksums=checksums) as w:
            while w.n < size:
                X, y = pending if pending is not None else next(blocks)
                take = min(len(y), size - w.n)
                if take == len(y):
                    w.append(X, y)
                    pending = None
                else:
                    head = csr_take_rows(X, np.arange(take)) if sparse else X[:take]
                    rest = csr_take_rows(X, np.arange(take, len(y))) if sparse else X[take:]
                    w.append(head, y[:take])
                    pending = (rest, y[take:])
    return paths
