"""Synthetic data sets written as HDF5 in the mpidml schema (see README, "Data layout").

``make_binary_dense``: a learnable, non-separable binary classification set. A fixed
random teacher (w*, b*) labels Gaussian features with y ~ Bernoulli(σ(x·w* + b*)),
so logistic regression is the right model and the optimum has a finite loss.
Train and test files share the teacher and use independent sample streams.
"""

from __future__ import annotations

import h5py
import numpy as np

from ..runtime.atomic import atomic_path

__all__ = ["make_binary_dense"]

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
