"""Out-of-core mode: stream a rank's rows in chunks within a memory budget.

A rank's rows (a global range, possibly spanning files) are read chunk by chunk; while
the caller computes on chunk k, a background thread reads chunk k+1 (``prefetch``),
which pays off when a core is free for it: the numba kernels release the GIL
(``nogil=True``) and h5py reads run in the other thread. By default it is on when the
node has at least two cores per rank (``prefetch_pays_off``). Chunks never cross files.

Memory model, for a budget B (``--memory-budget``, at least 256 MB on the CLI): a
training step whose rows straddle a chunk boundary needs chunks k and k+1 while chunk
k+2 is being prefetched, so up to three chunk buffers are alive: each chunk holds at
most ``chunk_bytes = 0.3·B`` (without prefetch only two are alive). Add h5py's
chunk cache (``CHUNK_CACHE_BYTES`` per open dataset) and validation temporaries kept
small (float64 reductions, no per-element masks unless a problem is found): the peak
RSS of a rank stays below its baseline (interpreter + libraries) + 1.2·B. The
benchmark ``bench/stream_rss.py`` measures it.

Each chunk is validated as it is read (finite features, CSR structure). Labels are
mapped with the data set's ``LabelPlan`` (agreed over all ranks in
``open_stream_collective`` by a pass over the labels only).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..runtime.errors import fail_together
from .layout import DataSet, open_dataset
from .loader import LabelPlan, RowReader, announce, check_labels, decide_labels, label_summary, require_labels
from .partition import file_spans, shard_rows

__all__ = ["MIN_MEMORY_BUDGET", "CHUNK_CACHE_BYTES", "Chunk", "ChunkStream", "chunk_bytes_for",
           "open_stream_collective", "parse_memory_budget", "prefetch_pays_off"]

MIN_MEMORY_BUDGET = 256 << 20
DEFAULT_PREFETCH = None  # None: auto (prefetch_pays_off); True/False force it (bench/stream_rss.py)
CHUNK_CACHE_BYTES = 1 << 20


def prefetch_pays_off(comm) -> bool:
    """Collective. Prefetching needs a core for the reader thread: on when this node has
    at least two usable cores per rank on it. (Measured on 2 cores, bench/stream_rss.py:
    1 rank -13 % epoch time with prefetch, 2 ranks +4 %.)"""
    from ..runtime.threads import node_ranks, usable_cores

    return usable_cores() >= 2 * node_ranks(comm)


def parse_memory_budget(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"300MB"`` or a number of MB → bytes (>= 256 MB)."""
    t = str(text).strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        value = float(t[:-1]) * scale[t[-1]] if t and t[-1] in scale else float(t) * (1 << 20)
    except ValueError:
        raise ValueError(f"--memory-budget: cannot parse {text!r} (e.g. 512M, 2G)") from None
    if value < MIN_MEMORY_BUDGET:
        raise ValueError(f"--memory-budget must be >= 256M, got {text}")
    return int(value)


def chunk_bytes_for(budget: int) -> int:
    """Bytes of one chunk buffer under ``budget`` (see the module docstring). The same with
    or without prefetching, so the chunked row order — and the model — do not depend on
    how many cores the machine has."""
    return int(budget * 0.3)


@dataclass
class Chunk:
    """Rows ``[start, stop)`` (global) of the data set: ``X`` (dense or CSRMatrix), ``y``."""

    X: object
    y: np.ndarray
    start: int
    stop: int
    index: int

    @property
    def n(self) -> int:
        return self.stop - self.start


class ChunkStream:
    """Iterate over global rows ``[start, stop)`` of ``ds`` in chunks of at most
    ``chunk_bytes`` bytes (features + labels), each validated and label-mapped.

    Iterate as often as needed (one pass per epoch). ``close()`` releases the files.
    """

    def __init__(self, ds: DataSet, start: int, stop: int, budget: int, prefetch: bool = True,
                 plan: LabelPlan | None = None):
        self.ds, self.start, self.stop = ds, start, stop
        self.prefetch = prefetch
        self.plan = plan
        self.chunk_bytes = chunk_bytes_for(budget)
        self.reader = RowReader(ds, chunk_cache_bytes=CHUNK_CACHE_BYTES)
        self._lock = threading.Lock()
        self.ranges = self._plan_ranges()

    @property
    def n(self) -> int:
        return self.stop - self.start

    def _plan_ranges(self) -> list[tuple[int, int]]:
        """Chunk boundaries: rows per chunk from the row size (dense) or from ``indptr``
        (CSR: as many rows as fit by their nonzeros)."""
        ds, out = self.ds, []
        y_item = ds.y_dtype.itemsize
        for i, a, b in file_spans(ds.offsets, self.start, self.stop):
            base = ds.offsets[i]
            if not ds.sparse:
                rows = max(1, self.chunk_bytes // (ds.d * ds.dtype.itemsize + y_item))
                out += [(base + s, base + min(b, s + rows)) for s in range(a, b, rows)]
                continue
            per_nnz = ds.dtype.itemsize + ds.files[i].index_dtype.itemsize
            per_row = 8 + y_item
            f = self.reader.file(i)
            s = a
            probe = max(1, self.chunk_bytes // (8 * per_row))  # indptr read in bounded pieces
            while s < b:
                ptr = f["X/indptr"][s:min(b, s + probe) + 1].astype(np.int64)
                cost = (ptr - ptr[0]) * per_nnz + np.arange(len(ptr)) * per_row
                k = max(1, int(np.searchsorted(cost, self.chunk_bytes, side="right")) - 1)
                out.append((base + s, base + s + k))
                s += k
        return out

    def _read(self, k: int) -> Chunk:
        a, b = self.ranges[k]
        with self._lock:  # one read at a time on this reader
            X, y = self.reader.read(a, b)
        if self.plan is not None and self.plan.map_pm1:
            y = (y == 1).astype(y.dtype)
        return Chunk(X, y, a, b, k)

    def __iter__(self):
        if not self.ranges:
            return
        if not self.prefetch:
            for k in range(len(self.ranges)):
                yield self._read(k)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpidml-prefetch") as pool:
            nxt = pool.submit(self._read, 0)
            for k in range(len(self.ranges)):
                chunk = nxt.result()
                if k + 1 < len(self.ranges):
                    nxt = pool.submit(self._read, k + 1)
                yield chunk
                del chunk  # drop our reference before the next buffer arrives

    def sample_shard(self, rows: int = 2):
        """A ``Shard`` with the first ``rows`` rows of this stream (schema, dtypes, warm-up)."""
        from .loader import Shard

        stop = min(self.stop, self.start + rows)
        with self._lock:
            X, y = self.reader.read(self.start, stop)
        return Shard(path=self.ds.spec, X=X, y=y, start=self.start, stop=stop, n_total=self.ds.n,
                     dataset=self.ds)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _scan_own_labels(ds: DataSet, start: int, stop: int, labels: str, block: int = 1 << 20):
    """Check the labels of rows ``[start, stop)`` (labels only) and summarise them."""
    out = []
    with RowReader(ds, chunk_cache_bytes=CHUNK_CACHE_BYTES) as reader:
        for i, a, b in file_spans(ds.offsets, start, stop):
            y = reader.file(i)["y"]
            for s in range(a, b, block):
                ys = y[s:min(b, s + block)]
                check_labels(ys, ds.offsets[i] + s, labels, reader)
                out.append(label_summary(ys, ds.offsets[i] + s, labels))
    return out


def open_stream_collective(comm, spec, budget: int, labels: str = "binary", prefetch: bool | None = None,
                           validate: bool = True, log=None, what: str = "opening the data stream",
                           part: tuple[int, int] | None = None):
    """Collective over ``comm``: open this rank's contiguous rows of ``spec`` as a
    ``ChunkStream`` under ``budget`` bytes. The ranks agree on the label plan (a pass over
    their labels); ``prefetch=None`` decides by ``prefetch_pays_off``; with ``validate`` every
    chunk is read once up front so that bad values fail all ranks together here rather than
    one rank in the middle of training.
    """
    size, rank = comm.Get_size(), comm.Get_rank()
    if part is not None:      # (parts, index): split over ``parts`` ranks; index -1 streams no rows
        size, rank = part
    if prefetch is None:
        prefetch = DEFAULT_PREFETCH if DEFAULT_PREFETCH is not None else prefetch_pays_off(comm)

    def local():
        ds = open_dataset(spec, check_sizes=True)
        require_labels(ds, labels)
        start, stop = shard_rows(ds.n, size, rank) if rank >= 0 else (0, 0)
        return ds, start, stop, _scan_own_labels(ds, start, stop, labels)

    ds, start, stop, summaries = fail_together(comm, what, local)
    merged = [s for part in comm.allgather(summaries) for s in part]

    def make():
        with RowReader(ds) as reader:
            plan = decide_labels(labels, merged, reader.where, ds=ds)
        stream = ChunkStream(ds, start, stop, budget, prefetch, plan)
        try:
            if validate:
                for _ in stream:
                    pass
        except BaseException:
            stream.close()
            raise
        return stream

    stream = fail_together(comm, what, make)
    if comm.Get_rank() == 0:
        announce(log, ds, stream.plan, size)
    return stream
