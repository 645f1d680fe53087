"""Pure partition functions: which rows a rank owns. No MPI, unit-tested directly.

Balanced block partition: ``n`` rows over ``parts`` parts, sizes differ by at most
one, the remainder going to the first parts; parts are contiguous, in order,
never overlap and together cover ``[0, n)`` exactly (parts > n gives empty parts).

The other partitioners: ``file_spans`` (a global row range over shard files),
``shuffled_rows`` (per-epoch global shuffle), ``sampled_rows`` (with replacement) and
``feature_columns`` (column blocks for model parallelism).
"""

import numpy as np

from ..comm.common import block_counts  # one implementation: the ring's segments are these blocks

#: ``--partition``: contiguous (data.batches.InMemoryRows / StreamedRows), shuffle and
#: sample (data.batches.EpochReadRows)
PARTITIONS = ("contiguous", "shuffle", "sample")

__all__ = ["block_counts", "shard_rows", "file_spans", "epoch_permutation", "shuffled_rows",
           "sampled_rows", "feature_columns"]


def shard_rows(n: int, size: int, rank: int) -> tuple[int, int]:
    """Half-open row range ``(start, stop)`` owned by ``rank`` of ``size`` ranks over ``n`` rows."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} out of range for size {size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, rem = divmod(n, size)
    start = rank * base + min(rank, rem)
    return start, start + base + (1 if rank < rem else 0)


# ---------------------------------------------------------------------------------------
# Beyond contiguous blocks. Every function here is pure: the same arguments give the
# same answer on every rank, so ranks agree on who owns what without communicating.


def file_spans(offsets, start: int, stop: int) -> list[tuple[int, int, int]]:
    """Split the global row range ``[start, stop)`` over files whose first global rows
    are ``offsets[:-1]`` (``offsets[-1]`` = total rows): ``(file, local_start, local_stop)``
    for each file the range touches, in order, empty pieces left out."""
    if not 0 <= start <= stop <= offsets[-1]:
        raise ValueError(f"rows {start}..{stop} outside [0, {offsets[-1]})")
    spans = []
    for i in range(len(offsets) - 1):
        a, b = max(start, offsets[i]), min(stop, offsets[i + 1])
        if a < b:
            spans.append((i, a - offsets[i], b - offsets[i]))
    return spans


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The global order of all ``n`` rows in ``epoch`` (int64), identical on every rank."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n).astype(np.int64, copy=False)


def shuffled_rows(n: int, size: int, rank: int, seed: int, epoch: int) -> np.ndarray:
    """Per-epoch global shuffle: the global rows ``rank`` owns in ``epoch``, in the order
    to visit them. The ranks' rows are disjoint and cover ``[0, n)`` exactly once per
    epoch (a balanced block of ``epoch_permutation``)."""
    start, stop = shard_rows(n, size, rank)
    return epoch_permutation(n, seed, epoch)[start:stop].copy()


def sampled_rows(n: int, size: int, rank: int, seed: int, epoch: int,
                 samples: int | None = None) -> np.ndarray:
    """Random sampling with replacement: ``rank``'s balanced share of ``samples``
    (default ``n``) global rows drawn uniformly from ``[0, n)`` in ``epoch``. Ranks draw
    independent streams; repeats within and across ranks are expected."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} out of range for size {size}")
    samples = n if samples is None else samples
    count = block_counts(samples, size)[rank]
    if n == 0:
        if count:
            raise ValueError("cannot sample rows from an empty data set")
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, rank, 0x5A3])
    return rng.integers(0, n, size=count, dtype=np.int64)


def feature_columns(d: int, size: int, rank: int) -> tuple[int, int]:
    """Model parallelism: the half-open column block ``(c0, c1)`` of ``d`` features that
    ``rank`` owns (balanced, contiguous, disjoint, covering ``[0, d)``)."""
    return shard_rows(d, size, rank)
