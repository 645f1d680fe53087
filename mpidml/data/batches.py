"""How a rank visits its rows: per-step row pieces for in-memory and streamed shards.

Every rank runs ``steps`` steps per epoch; step ``s`` takes the ``s``-th of ``steps``
balanced slices (``shard_rows``) of the rank's epoch order. A step's rows come as
*pieces* ``(X, y, rows)``: the kernel is called once per piece and the sums added.

* ``InMemoryRows(X, y)``: the epoch order is one permutation of the shard
  (``default_rng([seed, epoch, rank])``), one piece per step.
* ``InMemoryRows(X, y, chunk_sizes)`` and ``StreamedRows(stream)``: the *chunked*
  order — chunks in storage order, rows shuffled within each chunk
  (``default_rng([seed, epoch, rank, k])``), pieces split at chunk boundaries. Both give
  the same pieces in the same order, so a model trained from a stream is bit-identical
  to one trained in memory with the same chunk sizes.
* ``EpochReadRows(shard, size, partition)`` (``--partition shuffle|sample``): each
  epoch the rank's rows come from a pure partition function over the *whole* data set
  (``shuffled_rows`` — a balanced block of one global permutation, every row exactly
  once per epoch across ranks — or ``sampled_rows`` — with replacement, seeded by
  ``(seed, epoch, rank)``) and are read from the file(s) then, one piece per step.

``full()`` (the exact objective) is always the rank's contiguous shard, so every row
counts exactly once across ranks whatever the training order.
"""

from __future__ import annotations

import time

import numpy as np

from .loader import RowReader
from .partition import PARTITIONS, sampled_rows, shard_rows, shuffled_rows

__all__ = ["InMemoryRows", "StreamedRows", "EpochReadRows", "PARTITIONS", "chunk_permutation", "step_pieces",
           "loss_grad_pieces"]



def chunk_permutation(size: int, seed: int, epoch: int, rank: int, k: int | None) -> np.ndarray:
    """Visiting order of a chunk's rows (k=None: the whole shard as one chunk)."""
    key = [seed, epoch, rank] if k is None else [seed, epoch, rank, k]
    return np.random.default_rng(key).permutation(size).astype(np.int64, copy=False)


def step_pieces(chunk_starts: list[int], a: int, b: int) -> list[tuple[int, int, int]]:
    """Positions ``[a, b)`` of the chunked order as ``(chunk, lo, hi)`` pieces; pure.
    ``chunk_starts`` = first position of every chunk, plus the total at the end."""
    out = []
    k = int(np.searchsorted(chunk_starts, a, side="right")) - 1
    while a < b:
        hi = min(b, chunk_starts[k + 1])
        if hi > a:
            out.append((k, a - chunk_starts[k], hi - chunk_starts[k]))
        a = hi
        k += 1
    return out


def _starts(sizes) -> list[int]:
    return [0, *np.cumsum(sizes).tolist()]


class InMemoryRows:
    """Row pieces of a shard held in memory."""

    def __init__(self, X, y, chunk_sizes: list[int] | None = None):
        self.X, self.y = X, y
        self.n = int(y.shape[0])
        self.chunk_sizes = chunk_sizes

    def epoch(self, steps: int, seed: int, epoch: int, rank: int):
        """Per step, the list of pieces ``(X, y, rows)``."""
        if self.chunk_sizes is None:
            perm = chunk_permutation(self.n, seed, epoch, rank, None)
            for s in range(steps):
                a, b = shard_rows(self.n, steps, s)
                yield [(self.X, self.y, perm[a:b])]
            return
        starts = _starts(self.chunk_sizes)
        perms = [starts[k] + chunk_permutation(m, seed, epoch, rank, k) for k, m in enumerate(self.chunk_sizes)]
        for s in range(steps):
            a, b = shard_rows(self.n, steps, s)
            yield [(self.X, self.y, perms[k][lo:hi]) for k, lo, hi in step_pieces(starts, a, b)]

    def full(self):
        """Every row once, as pieces (for the exact objective)."""
        if self.chunk_sizes is None:
            yield self.X, self.y, np.arange(self.n, dtype=np.int64)
            return
        starts = _starts(self.chunk_sizes)
        for k in range(len(self.chunk_sizes)):
            yield self.X, self.y, np.arange(starts[k], starts[k + 1], dtype=np.int64)


class StreamedRows:
    """Row pieces of a ``ChunkStream``: only the chunks a step needs (plus the one being
    prefetched) are in memory."""

    def __init__(self, stream):
        self.stream = stream
        self.chunk_sizes = [b - a for a, b in stream.ranges]
        self.n = stream.n

    def epoch(self, steps: int, seed: int, epoch: int, rank: int):
        starts = _starts(self.chunk_sizes)
        chunks = iter(self.stream)
        held: dict[int, tuple] = {}  # chunk index -> (chunk, permutation)
        for s in range(steps):
            a, b = shard_rows(self.n, steps, s)
            pieces = step_pieces(starts, a, b)
            for k, _, _ in pieces:
                while k not in held:
                    c = next(chunks)
                    held[c.index] = (c, chunk_permutation(c.n, seed, epoch, rank, c.index))
                    del c
            out = [(held[k][0].X, held[k][0].y, held[k][1][lo:hi]) for k, lo, hi in pieces]
            yield out
            out.clear()  # the caller's reference to this step's list no longer pins chunks
            last = pieces[-1][0] if pieces else -1
            for k in [k for k in held if k < last or (k == last and b == starts[k + 1])]:
                del held[k]
        for _ in chunks:  # finish the pass (closes the prefetch thread)
            pass

    def full(self):
        for c in self.stream:
            piece = (c.X, c.y, np.arange(c.n, dtype=np.int64))
            del c
            yield piece


class EpochReadRows:
    """Row pieces of a per-epoch global partition, read from the data set every epoch.

    ``shard`` is the rank's contiguous shard as loaded (``load_shard_collective``): it
    provides the data set, the label mapping and ``full()``; ``size`` is the rank count.
    Each ``epoch`` the rank's global rows (``rows_for``) are read once, sorted and
    distinct, through ``RowReader.read_rows`` (blocks of ~64 MB, skipping blocks that
    hold none of them; CSR too) and visited in the partitioner's order by index, so a row
    sampled twice is stored once. At most one epoch's rows are held besides the shard.
    Values are validated as they are read; the labels were checked (and -1/+1 mapped) over
    the whole data set when the shards were loaded. ``reload_seconds``: read time per epoch.
    """

    def __init__(self, shard, size: int, partition: str):
        if partition not in ("shuffle", "sample"):
            raise ValueError(f"partition must be 'shuffle' or 'sample', got {partition!r}")
        self.shard, self.size, self.partition = shard, int(size), partition
        self.n = shard.n                  # rows of full(): the contiguous shard
        self.n_total = shard.n_total
        self.reload_seconds: list[float] = []

    def rows_for(self, seed: int, epoch: int, rank: int) -> np.ndarray:
        """Global rows of ``rank`` in ``epoch``, in visiting order (pure)."""
        if self.partition == "shuffle":
            return shuffled_rows(self.n_total, self.size, rank, seed, epoch)
        return sampled_rows(self.n_total, self.size, rank, seed, epoch)

    def read(self, rows: np.ndarray):
        """``(X, y, order)``: the distinct ``rows`` read in ascending order, and for every
        entry of ``rows`` its position in them (so ``X[order]`` is ``rows``' data)."""
        uniq, order = np.unique(rows, return_inverse=True)
        with RowReader(self.shard.dataset) as reader:
            X, y = reader.read_rows(uniq)
        if self.shard.labels_mapped:      # the data set's -1/+1 labels, as at load time
            y = (y == 1).astype(y.dtype)
        return X, y, order.astype(np.int64, copy=False)

    def epoch(self, steps: int, seed: int, epoch: int, rank: int):
        t0 = time.perf_counter()
        X, y, order = self.read(self.rows_for(seed, epoch, rank))
        self.reload_seconds.append(time.perf_counter() - t0)
        for s in range(steps):
            a, b = shard_rows(order.size, steps, s)
            yield [(X, y, order[a:b])]

    def full(self):
        yield self.shard.X, self.shard.y, np.arange(self.shard.n, dtype=np.int64)


def loss_grad_pieces(model, pieces, params, grad, scratch) -> float:
    """Summed loss (returned) and summed gradient (into ``grad``) over all ``pieces``
    of one step; ``scratch`` is a gradient-sized buffer. No pieces: zeros."""
    if not pieces:
        grad[:] = 0
        return 0.0
    loss = 0.0
    for i, (X, y, rows) in enumerate(pieces):
        if i == 0:
            loss += model.loss_grad_sum(X, y, rows, params, grad)
        else:
            loss += model.loss_grad_sum(X, y, rows, params, scratch)
            grad += scratch
    return loss
