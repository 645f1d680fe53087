"""Content checksums of a data file: SHA-256 per block of rows, per dataset.

Written by ``DataSetWriter(checksums=True)`` (``data convert`` and ``data synth`` do so
unless ``--no-checksums``), verified by every contiguous read of a file that has them
(``RowReader.read``: training, ``data check``, the streamed passes, per-epoch reloads).

Layout: group ``/checksums`` with attributes ``algorithm = "sha256"``, ``block_rows = B``
and ``version = 1``, and one ``(ceil(n / B), 32) uint8`` dataset per checked dataset,
named like it (``/checksums/X``, ``/checksums/y``; CSR: ``/checksums/X/data``,
``/checksums/X/indices``, ``/checksums/X/indptr``; an unlabelled file, without ``/y``,
has no ``/checksums/y``). Digest k covers rows
``[kB, min(n, (k+1)B))``: their rows of ``/X`` and ``/y`` (stored dtype, native byte
order); for CSR their nonzeros of ``/X/data`` (stored dtype) and ``/X/indices`` (as
int64, so a writer may widen indices midway), and ``/X/indptr`` entries ``kB+1 ..
min(n, (k+1)B)`` as int64 (the ends of those rows). The table is a dataset, not an
attribute, because an attribute holds at most 64 KiB (2000 blocks) in the default
file format.

Cost at load: one SHA-256 pass over what the rank reads (hashed from the arrays just
read, no copy), plus a read of the at most two blocks that straddle the ends of each of
its row ranges. A block verified once is not hashed again by this process (same file,
size and mtime): streamed passes and per-epoch reloads pay once.
"""

from __future__ import annotations

import hashlib
import os

import h5py
import numpy as np

from ..runtime.errors import MpidmlError

__all__ = ["GROUP", "ALGORITHM", "block_rows_for", "BlockHasher", "FileChecksums", "file_checksums",
           "describe_checksums"]

GROUP = "checksums"
ALGORITHM = "sha256"
VERSION = 1
BLOCK_BYTES = 4 << 20   # dense: about this many bytes of /X per block
CSR_BLOCK_ROWS = 1 << 14

_VERIFIED: set = set()   # (file identity, dataset, block) already verified in this process


def block_rows_for(d: int, itemsize: int, sparse: bool) -> int:
    """Rows per checksum block: ~4 MiB of dense /X, or 16384 CSR rows."""
    return CSR_BLOCK_ROWS if sparse else max(1, BLOCK_BYTES // max(1, d * itemsize))


def _canonical(a: np.ndarray, name: str) -> np.ndarray:
    if name in ("X/indices", "X/indptr"):
        a = a.astype(np.int64, copy=False)
    elif not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return np.ascontiguousarray(a)


def _digest(a: np.ndarray, name: str) -> bytes:
    return hashlib.sha256(_canonical(a, name).view(np.uint8)).digest()


def names(sparse: bool, labelled: bool = True) -> tuple[str, ...]:
    """The checked datasets: those of ``/X``, and ``/y`` unless the file is unlabelled."""
    xs = ("X/data", "X/indices", "X/indptr") if sparse else ("X",)
    return xs + ("y",) if labelled else xs


class BlockHasher:
    """Digests of rows as a writer appends them (any block sizes), per dataset."""

    def __init__(self, sparse: bool, block_rows: int, labelled: bool = True):
        self.sparse, self.block_rows = sparse, int(block_rows)
        self.names = names(sparse, labelled)
        self.digests = {n: [] for n in self.names}
        self._open = {n: hashlib.sha256() for n in self.names}
        self.n = 0

    def add(self, row0: int, arrays: dict) -> None:
        """Rows ``row0 ..`` (``row0`` = rows added so far): ``arrays`` maps each name to its
        part for those rows; CSR also passes ``"rowptr"``: int64 row ends, local, length rows + 1
        (slices data/indices by row) and ``"X/indptr"`` (global ends of those rows). An
        unlabelled writer passes no ``"y"``."""
        k = len(arrays["X/indptr"] if self.sparse else arrays["X"])
        pos = 0
        while pos < k:
            take = min(k - pos, self.block_rows - (self.n % self.block_rows))
            for name in self.names:
                a = arrays[name]
                if name in ("X/data", "X/indices"):
                    rp = arrays["rowptr"]
                    part = a[rp[pos]:rp[pos + take]]
                else:
                    part = a[pos:pos + take]
                self._open[name].update(_canonical(part, name).view(np.uint8))
            pos += take
            self.n += take
            if self.n % self.block_rows == 0:
                self._close_block()

    def _close_block(self) -> None:
        for name in self.names:
            self.digests[name].append(self._open[name].digest())
            self._open[name] = hashlib.sha256()

    def write(self, f: h5py.File) -> None:
        """Store the table in ``f`` (call once, after the last rows)."""
        if self.n % self.block_rows:
            self._close_block()
        g = f.require_group(GROUP)
        g.attrs["algorithm"] = ALGORITHM
        g.attrs["block_rows"] = self.block_rows
        g.attrs["version"] = VERSION
        for name in self.names:
            table = np.frombuffer(b"".join(self.digests[name]), np.uint8).reshape(-1, 32)
            g.create_dataset(name, data=table)


class FileChecksums:
    """The checksum table of one open data file, and verification of row blocks."""

    def __init__(self, f: h5py.File, path: str, n: int, sparse: bool):
        self.f, self.path, self.n, self.sparse = f, path, n, sparse
        self.labelled = "y" in f   # an unlabelled file (no /y) has no /checksums/y
        g = f[GROUP]
        if g.attrs.get("algorithm") != ALGORITHM or int(g.attrs.get("version", 0)) != VERSION:
            raise MpidmlError(f"{path}: /{GROUP} has algorithm {g.attrs.get('algorithm')!r} version "
                              f"{g.attrs.get('version')!r}; {ALGORITHM} version {VERSION} expected")
        self.block_rows = int(g.attrs["block_rows"])
        nblocks = -(-n // self.block_rows)
        self.tables = {}
        for name in names(sparse, self.labelled):
            if name not in g or g[name].shape != (nblocks, 32):
                raise MpidmlError(f"{path}: /{GROUP}/{name} missing or not ({nblocks}, 32): the checksum "
                                  "table does not match the data (damaged, or the data was rewritten)")
            self.tables[name] = g[name][()]
        st = os.stat(path)
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        self.blocks_verified = 0

    def blocks(self, a: int, b: int):
        """Blocks ``(k, ka, kb)`` overlapping rows ``[a, b)``."""
        B = self.block_rows
        for k in range(a // B, -(-b // B) if b > a else a // B):
            yield k, k * B, min(self.n, (k + 1) * B)

    def verify(self, a: int, b: int, memory) -> None:
        """Verify every block overlapping rows ``[a, b)``. ``memory(ka, kb)`` gives the
        arrays of a block held in memory (dict name -> array), or None to read it here."""
        for k, ka, kb in self.blocks(a, b):
            if (self.identity, k) in _VERIFIED:
                continue
            arrays = memory(ka, kb) if a <= ka and kb <= b else None
            if arrays is None:
                arrays = self._read_block(ka, kb)
            for name, table in self.tables.items():
                if _digest(arrays[name], name) != table[k].tobytes():
                    raise MpidmlError(f"{self.path}: /{name} rows {ka}..{kb - 1} do not match their "
                                      f"{ALGORITHM} checksum (block {k} of /{GROUP}): the data changed "
                                      "after it was written (damaged; if it was edited on purpose, "
                                      f"delete /{GROUP} from the file)")
            _VERIFIED.add((self.identity, k))
            self.blocks_verified += 1

    def _read_block(self, ka: int, kb: int) -> dict:
        f = self.f
        try:
            if not self.sparse:
                arrays = {"X": f["X"][ka:kb]}
            else:
                ptr = f["X/indptr"][ka:kb + 1].astype(np.int64)
                lo, hi = int(ptr[0]), int(ptr[-1])
                arrays = {"X/data": f["X/data"][lo:hi], "X/indices": f["X/indices"][lo:hi],
                          "X/indptr": ptr[1:]}
            if self.labelled:
                arrays["y"] = f["y"][ka:kb]
            return arrays
        except (OSError, ValueError) as exc:
            raise MpidmlError(f"{self.path}: reading rows {ka}..{kb - 1} to verify their checksum failed, "
                              f"truncated or corrupt file ({exc})") from None


def file_checksums(f: h5py.File, path: str, n: int, sparse: bool) -> FileChecksums | None:
    """The checksum table of open file ``f`` (``None``: the file has none)."""
    return FileChecksums(f, path, n, sparse) if GROUP in f else None


def describe_checksums(ds) -> str:
    """How many of data set ``ds``'s files carry checksums, for ``data check``'s summary."""
    from .layout import open_h5

    have = 0
    for fs in ds.files:
        with open_h5(fs.path) as f:
            have += GROUP in f
    if have == len(ds.files):
        return f"content checksums verified ({ALGORITHM}, {have} file(s))"
    note = "no content checksums" if not have else f"content checksums in {have} of {len(ds.files)} files (verified)"
    return note + " (python -m mpidml.data convert/synth write them)"
