"""Issue 25 items 6 and 7: half-written, unallocated, damaged and absurdly sized inputs are
refused (exit 2, one message naming file, dataset and row) instead of trained on or ending
in a MemoryError traceback."""

import hashlib
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mpidml.data.layout import CSRMatrix, open_dataset
from mpidml.data.loader import load_shard
from mpidml.data.synth import binary_dense_blocks, clicklog_csr_blocks, write_blocks
from mpidml.data.writer import write_csr, write_dense
from mpidml.runtime.errors import MpidmlError

from mpirun import run_mpi


def check(spec, labels="binary"):
    return ["-m", "mpidml.data", "check", spec, "--labels", labels]


# ---- item 6: unallocated storage -------------------------------------------------------

def test_declared_5gb_never_written_is_refused(tmp_path):
    """A 5 GB /X declared with chunks but never written is a ~2 KB file; it used to load
    as 2.5 GB of zeros per rank."""
    path = str(tmp_path / "declared.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("X", shape=(10_000_000, 128), dtype=np.float32, chunks=(8192, 128))
        f.create_dataset("y", shape=(10_000_000,), dtype=np.float32, chunks=(8192,))
    assert os.path.getsize(path) < 100_000
    with pytest.raises(MpidmlError, match=r"declared.h5: /X rows 0\.\.9999999 were never written "
                                          r"\(1221 of 1221 storage chunks unallocated"):
        open_dataset(path)


def test_partly_written_files_name_the_first_unwritten_rows(tmp_path):
    dense = str(tmp_path / "partial.h5")     # a writer that got 25 % of the way
    with h5py.File(dense, "w") as f:
        X = f.create_dataset("X", shape=(40000, 8), dtype=np.float32, chunks=(1000, 8))
        y = f.create_dataset("y", shape=(40000,), dtype=np.float32, chunks=(1000,))
        X[:10000] = 1.0
        y[:10000] = 1.0
        X[20000:21000] = 1.0                 # a later written stretch: the FIRST gap is named
    with pytest.raises(MpidmlError, match=r"/X rows 10000\.\.19999 were never written \(29 of 40"):
        open_dataset(dense)
    contiguous = str(tmp_path / "contig.h5")
    with h5py.File(contiguous, "w") as f:
        f.create_dataset("X", shape=(400, 3), dtype=np.float64)
        f["y"] = np.zeros(400, np.float32)
    with pytest.raises(MpidmlError, match=r"/X rows 0\.\.399 were never written \(no storage allocated"):
        open_dataset(contiguous)
    labels = str(tmp_path / "labels.h5")     # features complete, labels not
    with h5py.File(labels, "w") as f:
        f["X"] = np.ones((3000, 2), np.float32)
        y = f.create_dataset("y", shape=(3000,), dtype=np.float32, chunks=(500,))
        y[:2000] = 1
    with pytest.raises(MpidmlError, match=r"/y rows 2000\.\.2999 were never written"):
        open_dataset(labels)
    csr = str(tmp_path / "csr.h5")           # CSR: nonzeros 400.. never written -> their rows
    with h5py.File(csr, "w") as f:
        g = f.create_group("X")
        data = g.create_dataset("data", shape=(1000,), dtype=np.float32, chunks=(100,))
        ind = g.create_dataset("indices", shape=(1000,), dtype=np.int32, chunks=(100,))
        data[:400] = 1
        ind[:] = 0
        g["indptr"] = np.arange(0, 1001, 10, dtype=np.int64)   # 100 rows of 10 nonzeros
        g.attrs["shape"] = np.array([100, 5])
        f["y"] = np.zeros(100, np.float32)
    with pytest.raises(MpidmlError, match=r"/X/data nonzeros of rows 40\.\.99 were never written"):
        open_dataset(csr)


def test_partial_file_fails_check_and_training_on_every_rank(tmp_path):
    path = str(tmp_path / "partial.h5")
    with h5py.File(path, "w") as f:
        X = f.create_dataset("X", shape=(4000, 4), dtype=np.float32, chunks=(250, 4))
        y = f.create_dataset("y", shape=(4000,), dtype=np.float32, chunks=(250,))
        X[:1000] = np.random.default_rng(0).standard_normal((1000, 4))
        y[:1000] = 1
    for args in (check(path), ["-m", "mpidml.train", "--data", path, "--epochs", "1", "-q"]):
        res = run_mpi(2, args, timeout=90)
        assert res.returncode == 2, res.output
        assert "partial.h5: /X rows 1000..3999 were never written" in res.stderr
        assert "ranks 0-1: " in res.stderr and res.stderr.count("mpidml: error") == 1
        assert "Traceback" not in res.stderr


# ---- item 6: a writer still at work ----------------------------------------------------

WRITER = """
import sys, time, h5py, numpy as np
f = h5py.File(sys.argv[1], sys.argv[2], **({"libver": "latest"} if sys.argv[3] == "swmr" else {}))
if "X" not in f:
    f.create_dataset("X", data=np.ones((100, 3), np.float32), maxshape=(None, 3), chunks=(10, 3))
    f.create_dataset("y", data=np.zeros(100, np.float32), maxshape=(None,), chunks=(10,))
if sys.argv[3] == "swmr":
    f.swmr_mode = True
f.flush()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def writer(tmp_path):
    procs = []

    def start(path, mode="a", kind="plain"):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path, mode, kind], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_file_held_by_a_writer_is_refused_naming_it(tmp_path, writer):
    path = str(tmp_path / "growing.h5")
    write_dense(path, np.ones((100, 3), np.float32), np.zeros(100, np.float32))
    proc = writer(path, "a")          # an appending writer's snapshot
    with pytest.raises(MpidmlError, match=rf"growing.h5: is being written by another process \(pid {proc.pid} "):
        load_shard(path, 1, 0)
    res = run_mpi(2, check(path), timeout=60)
    assert res.returncode == 2, res.output
    assert f"is being written by another process (pid {proc.pid}" in res.stderr and "ranks 0-1" in res.stderr
    swmr = str(tmp_path / "swmr.h5")
    writer(swmr, "w", "swmr")         # SWMR writers drop the lock but mark the superblock
    with pytest.raises(MpidmlError, match=r"swmr.h5: is open for writing by another process"):
        load_shard(swmr, 1, 0)


def test_reading_holds_a_shared_lock_so_writers_wait(tmp_path):
    """While mpidml reads a file, a locking writer cannot open it (the input cannot change
    under a training run)."""
    path = str(tmp_path / "in.h5")
    write_dense(path, np.ones((10, 2), np.float32), np.zeros(10, np.float32))
    from mpidml.data.layout import open_h5

    with open_h5(path):
        res = subprocess.run([sys.executable, "-c", f"import h5py; h5py.File({path!r}, 'a')"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode != 0 and "unable to lock file" in res.stderr
    assert load_shard(path, 1, 0).n == 10


# ---- item 6: content checksums ---------------------------------------------------------

def _flip_bytes(path, dataset, count, seed=0):
    """Flip ``count`` bytes inside the stored chunks of ``dataset`` (raw file bytes)."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        spans = [ds.id.get_chunk_info(k) for k in range(ds.id.get_num_chunks())]
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as fh:
        for _ in range(count):
            c = spans[int(rng.integers(len(spans)))]
            pos = c.byte_offset + int(rng.integers(c.size))
            fh.seek(pos)
            b = fh.read(1)
            fh.seek(pos)
            fh.write(bytes([b[0] ^ 0x5A]))


def test_synth_checksums_catch_4000_flipped_bytes(tmp_path):
    path = str(tmp_path / "sum.h5")
    res = run_mpi(1, ["-m", "mpidml.data", "synth", "binary", path, "--rows", "20000", "--d", "16"], timeout=60)
    assert res.returncode == 0, res.output
    res = run_mpi(2, check(path), timeout=60)
    assert res.returncode == 0 and "content checksums verified (sha256, 1 file(s))" in res.stdout, res.output
    _flip_bytes(path, "X", 4000)
    for args in (check(path), ["-m", "mpidml.train", "--data", path, "--epochs", "1", "-q"]):
        res = run_mpi(2, args, timeout=90)
        assert res.returncode == 2, res.output
        assert "sum.h5: /X rows " in res.stderr and "do not match their sha256 checksum" in res.stderr
        assert res.stderr.count("mpidml: error") == 1


@pytest.mark.parametrize("sparse", [False, True])
def test_checksums_verify_every_rank_split_and_row_list(tmp_path, monkeypatch, sparse):
    """Small blocks (many block boundaries inside and across rank ranges and shard files):
    an intact set loads at every size; one changed value fails the block holding it."""
    from mpidml.data import checksum

    monkeypatch.setattr(checksum, "BLOCK_BYTES", 64 * 4 * 4)     # 64 rows of d=4 float32
    monkeypatch.setattr(checksum, "CSR_BLOCK_ROWS", 37)
    spec = str(tmp_path / "set")
    if sparse:
        blocks = clicklog_csr_blocks(1000, 50, nnz_per_row=4, seed=3, block_rows=91)
        write_blocks(spec, blocks, 1000, 50, np.float32, np.float32, sparse=True, shards=3, checksums=True)
    else:
        blocks = binary_dense_blocks(1000, 4, seed=3, block_rows=91)
        write_blocks(spec, blocks, 1000, 4, np.float32, np.float32, shards=3, checksums=True)
    full = load_shard(spec, 1, 0)
    for size in (2, 3, 4):
        parts = [load_shard(spec, size, r) for r in range(size)]
        assert sum(p.n for p in parts) == 1000
    rows = np.array([999, 3, 500, 3, 334])
    assert load_shard(spec, 1, 0, rows=rows).n == 5
    checksum._VERIFIED.clear()
    part = os.path.join(spec, "part-00001.h5")           # global rows 334..666
    with h5py.File(part, "r+") as f:
        name = "X/data" if sparse else "X"
        v = f[name][100]
        f[name][100] = v + 1
    with pytest.raises(MpidmlError, match=rf"part-00001.h5: /{name} rows \d+\.\.\d+ do not match"):
        load_shard(spec, 3, 1)
    assert full.n == 1000


@pytest.mark.parametrize("sparse", [False, True])
def test_unlabelled_checksums_cover_X_only(tmp_path, monkeypatch, sparse):
    """An unlabelled data set (no /y, issue 19) gets checksums of /X only (no /checksums/y);
    they verify at every split and a changed value is still caught."""
    from mpidml.data import checksum
    from mpidml.data.writer import DataSetWriter

    monkeypatch.setattr(checksum, "BLOCK_BYTES", 64 * 4 * 4)     # 64 rows of d=4 float32
    monkeypatch.setattr(checksum, "CSR_BLOCK_ROWS", 37)
    path = str(tmp_path / "unlabelled.h5")
    if sparse:
        blocks = clicklog_csr_blocks(500, 50, nnz_per_row=4, seed=3, block_rows=91)
    else:
        blocks = binary_dense_blocks(500, 4, seed=3, block_rows=91)
    with DataSetWriter(path, 50 if sparse else 4, np.float32, None, sparse=sparse, checksums=True) as w:
        for X, _ in blocks:
            w.append(X, None)
    with h5py.File(path, "r") as f:
        assert "y" not in f and "checksums/y" not in f
        assert ("checksums/X/data" if sparse else "checksums/X") in f
    with pytest.raises(MpidmlError, match="missing dataset /y"):
        load_shard(path, 1, 0)
    for size in (1, 2, 3):
        assert sum(load_shard(path, size, r, labels="none").n for r in range(size)) == 500
    checksum._VERIFIED.clear()
    with h5py.File(path, "r+") as f:
        name = "X/data" if sparse else "X"
        f[name][100] = f[name][100] + 1
    with pytest.raises(MpidmlError, match=rf"unlabelled.h5: /{name} rows \d+\.\.\d+ do not match"):
        load_shard(path, 1, 0, labels="none")


def test_convert_writes_checksums_that_survive_widening_indices(tmp_path):
    """libsvm with a column >= 2**31: indices are widened to int64 midway; the digests
    (over int64 indices) still match."""
    src = tmp_path / "wide.svm"
    src.write_text("".join(f"{i % 2} {1 + i}:1 {2**31 + 5 if i == 700 else 3 + i}:2\n" for i in range(1000)))
    dst = str(tmp_path / "wide.h5")
    res = run_mpi(1, ["-m", "mpidml.data", "convert", str(src), dst, "--block-rows", "300"], timeout=60)
    assert res.returncode == 0, res.output
    with h5py.File(dst, "r") as f:
        assert f["X/indices"].dtype == np.int64 and "checksums/X/indices" in f
    assert load_shard(dst, 2, 1).n == 500


def test_block_hasher_is_independent_of_append_sizes(tmp_path):
    from mpidml.data import checksum

    X = np.random.default_rng(1).standard_normal((500, 3)).astype(np.float32)
    y = np.arange(500) % 2
    digests = []
    for sizes in ([500], [1, 99, 400], [250, 250]):
        h = checksum.BlockHasher(False, 64)
        pos = 0
        for k in sizes:
            h.add(pos, {"X": X[pos:pos + k], "y": y[pos:pos + k]})
            pos += k
        h._close_block()
        digests.append(h.digests["X"])
    assert digests[0] == digests[1] == digests[2] and len(digests[0]) == 8
    assert digests[0][0] == hashlib.sha256(X[:64].tobytes()).digest()


# ---- item 7: absurd sizes --------------------------------------------------------------

def test_absurd_label_and_csr_width_exit_2_naming_file_and_row(tmp_path):
    rng = np.random.default_rng(0)
    label = str(tmp_path / "label.h5")
    y = rng.integers(0, 3, 200)
    y[137] = 1_000_000_000
    write_dense(label, rng.standard_normal((200, 5)).astype(np.float32), y.astype(np.int64))
    wide = str(tmp_path / "wide.h5")
    cols = (np.arange(400) % 7).astype(np.int32)
    cols[333] = 91
    write_csr(wide, CSRMatrix(np.ones(400, np.float32), cols, np.arange(0, 401, 2, dtype=np.int64), (200, 100)),
              (np.arange(200) % 2).astype(np.float32))
    with h5py.File(wide, "r+") as f:
        f["X"].attrs["shape"] = np.array([200, 5_000_000_000], np.int64)
    env = {"MPIDML_MEMORY_LIMIT": "16G"}    # the same verdict on a machine with more memory
    cases = [(["-m", "mpidml.train", "--data", label, "--model", "softmax", "--epochs", "1", "-q"],
              "label.h5: /y[137] = 1000000000 is the largest class label, so K = 1000000001 classes: a model "
              "of d x K = 5 x 1000000001 values needs 74.5 GiB"),
             (check(label, "classes"), "label.h5: /y[137] = 1000000000 is the largest class label"),
             (["-m", "mpidml.train", "--data", wide, "--epochs", "1", "-q"],
              "wide.h5: /X attribute shape says d = 5000000000 columns (the largest column index present "
              "is 91, in row 166): a model of d = 5000000000 values needs 74.5 GiB")]
    for args, text in cases:
        res = run_mpi(2, args, timeout=90, env=env)
        assert res.returncode == 2, res.output
        assert text in res.stderr, res.output
        assert "MemoryError" not in res.output and "Traceback" not in res.output
        assert "MPIDML_MEMORY_LIMIT is 16 GiB" in res.stderr


def test_rank_read_larger_than_memory_is_refused(tmp_path, monkeypatch):
    path = str(tmp_path / "d.h5")
    write_dense(path, np.ones((1000, 10), np.float32), np.zeros(1000, np.float32))
    monkeypatch.setenv("MPIDML_MEMORY_LIMIT", "20K")
    with pytest.raises(MpidmlError, match=r"d.h5: rows 500\.\.999 \(dense /X and /y\) need .* GiB in memory but "
                                          r"the MPIDML_MEMORY_LIMIT is .*: use more ranks or --memory-budget"):
        load_shard(path, 2, 1)
    assert load_shard(path, 4, 3).n == 250
