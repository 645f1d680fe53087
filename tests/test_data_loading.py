"""Loading without MPI: dense and CSR, one file and shard files, row sets, labels, and
every bad input as an MpidmlError naming file and dataset."""

import os

import h5py
import numpy as np
import pytest

from mpidml.data.layout import CSRMatrix, csr_concat, csr_take_rows, open_dataset, resolve_sources
from mpidml.data.loader import RowReader, load_shard
from mpidml.data.partition import feature_columns, sampled_rows, shuffled_rows
from mpidml.data.writer import write_csr, write_dense
from mpidml.runtime.errors import MpidmlError

from datasets import make_set, random_csr


def dense_of(X):
    return X.toarray() if isinstance(X, CSRMatrix) else X


LAYOUTS = [(20, False), (20, True), ([7, 1, 5, 9], False), ([7, 1, 5, 9], True)]


@pytest.mark.parametrize("sizes,sparse", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_union_of_contiguous_shards_is_the_data_set(tmp_path, sizes, sparse, dtype):
    spec, X, y = make_set(tmp_path, "s", sizes, sparse=sparse, dtype=dtype)
    for p in (1, 2, 3, 4, 25):  # 25 > n: some ranks get no rows
        shards = [load_shard(spec, p, r) for r in range(p)]
        assert [s.start for s in shards[1:]] == [s.stop for s in shards[:-1]]
        got = np.concatenate([dense_of(s.X) for s in shards])
        np.testing.assert_array_equal(got, X)
        np.testing.assert_array_equal(np.concatenate([s.y for s in shards]), y)
        for s in shards:
            assert s.X.dtype == dtype and s.y.dtype == np.float32 and s.n_total == len(y)
            assert s.sparse == sparse and s.d == X.shape[1] and s.n == s.stop - s.start
            if sparse:
                assert s.X.indptr[0] == 0 and s.X.indptr.dtype == np.int64
                assert s.X.indices.dtype == np.int32


@pytest.mark.parametrize("sizes,sparse", LAYOUTS)
def test_row_sets_in_given_order_with_repeats(tmp_path, sizes, sparse):
    spec, X, y = make_set(tmp_path, "r", sizes, sparse=sparse, seed=3)
    ds = open_dataset(spec)
    rows = np.array([19, 0, 7, 7, 8, 6, 19, 3], dtype=np.int64)
    with RowReader(ds) as reader:
        for block_bytes in (1, 40, 1 << 20):  # 1 row per block .. everything in one block
            Xr, yr = reader.read_rows(rows, block_bytes=block_bytes)
            np.testing.assert_array_equal(dense_of(Xr), X[rows])
            np.testing.assert_array_equal(yr, y[rows])
    for epoch in (0, 1):
        shards = [load_shard(spec, 3, r, rows=shuffled_rows(20, 3, r, 9, epoch)) for r in range(3)]
        allrows = np.concatenate([s.rows for s in shards])
        assert sorted(allrows) == list(range(20))
        np.testing.assert_array_equal(np.concatenate([dense_of(s.X) for s in shards]), X[allrows])
    s = load_shard(spec, 2, 1, rows=sampled_rows(20, 2, 1, 0, 0, samples=50))
    np.testing.assert_array_equal(dense_of(s.X), X[s.rows])
    assert len(s.rows) == 25


def test_sources_directory_glob_and_order(tmp_path):
    spec, X, _ = make_set(tmp_path, "g", [3, 4, 5])
    files = resolve_sources(spec)
    assert [os.path.basename(f) for f in files] == ["part-00000.h5", "part-00001.h5", "part-00002.h5"]
    assert resolve_sources(os.path.join(spec, "part-*.h5")) == files
    assert resolve_sources([files[2], files[0]]) == [files[2], files[0]]
    ds = open_dataset(os.path.join(spec, "*.h5"))
    assert ds.n == 12 and ds.offsets == [0, 3, 7, 12] and ds.d == 5
    with pytest.raises(MpidmlError, match="no files match"):
        resolve_sources(str(tmp_path / "nothing-*.h5"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(MpidmlError, match="no .h5 / .hdf5 shard files|no \\*.h5"):
        resolve_sources(str(tmp_path / "empty"))


def test_csr_helpers(tmp_path):
    rng = np.random.default_rng(1)
    A, dense = random_csr(9, 6, rng)
    rows = np.array([8, 0, 0, 4])
    np.testing.assert_array_equal(csr_take_rows(A, rows).toarray(), dense[rows])
    B = csr_concat([csr_take_rows(A, [0, 1]), csr_take_rows(A, [2, 3, 4, 5, 6, 7, 8])])
    np.testing.assert_array_equal(B.toarray(), dense)


def test_pm1_labels_are_mapped_for_every_shard(tmp_path):
    path = str(tmp_path / "pm1.h5")
    y = np.array([-1, 1, -1, 1, 1, 1], np.float64)  # rank 2 of 3 holds only +1 rows
    write_dense(path, np.ones((6, 2), np.float32), y)
    shards = [load_shard(path, 3, r) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([s.y for s in shards]), (y == 1).astype(np.float64))
    assert all(s.labels_mapped for s in shards) and shards[2].y.dtype == np.float64
    write_dense(str(tmp_path / "01.h5"), np.ones((4, 2), np.float32), np.array([0, 1, 1, 1.0]))
    assert not load_shard(str(tmp_path / "01.h5"), 2, 1).labels_mapped


def test_class_labels(tmp_path):
    path = str(tmp_path / "k.h5")
    write_dense(path, np.ones((5, 2), np.float32), np.array([0, 3, 1, 2, 0], np.int64))
    s = load_shard(path, 2, 1, labels="classes")
    assert s.n_classes == 4 and s.y.dtype == np.int64
    assert load_shard(path, 1, 0, labels="classes", n_classes=10).n_classes == 10
    with pytest.raises(MpidmlError, match=r"/y\[1\] = 3; class labels must be integers 0..2"):
        load_shard(path, 2, 0, labels="classes", n_classes=3)
    assert load_shard(path, 1, 0, labels="real").n_classes is None


# --- bad inputs: (name, how to make the file, expected text). Shared with the MPI test. ---

BAD_CASE_NAMES = [
    "missing_file", "missing_dataset", "missing_csr_dataset", "xy_length_mismatch",
    "shard_dtype_mismatch", "shard_width_mismatch", "shard_dense_vs_csr", "bad_dtype", "nan_in_x",
    "inf_in_csr", "csr_column_out_of_range", "csr_indptr_decreasing", "csr_no_shape",
    "binary_label_out_of_range",
    "binary_labels_mix_0_and_minus1", "class_label_negative", "zero_rows", "truncated_file", "not_hdf5"]


def nonempty_row(csr, at_least):
    return next(r for r in range(at_least, csr.n) if csr.indptr[r + 1] > csr.indptr[r])


def bad_inputs(tmp):
    """Create every bad input under ``tmp``; return [(case, spec, labels, expected text)]."""
    cases = []
    ok = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    y01 = np.array([0, 1] * 5, np.float32)

    def add(case, spec, text, labels="binary"):
        cases.append((case, spec, labels, text))

    add("missing_file", os.path.join(tmp, "nope.h5"), "nope.h5: no such file")
    p = os.path.join(tmp, "no_y.h5")
    with h5py.File(p, "w") as f:
        f["X"] = ok
    add("missing_dataset", p, "no_y.h5: missing dataset /y")
    p = os.path.join(tmp, "csr_no_indptr.h5")
    with h5py.File(p, "w") as f:
        g = f.create_group("X")
        g["data"], g["indices"] = np.ones(3, np.float32), np.zeros(3, np.int32)
        g.attrs["shape"] = (3, 4)
        f["y"] = np.zeros(3, np.float32)
    add("missing_csr_dataset", p, "csr_no_indptr.h5: missing dataset /X/indptr")
    p = os.path.join(tmp, "len.h5")
    with h5py.File(p, "w") as f:
        f["X"], f["y"] = ok, y01[:9]
    add("xy_length_mismatch", p, "len.h5: /X has 10 rows but /y has 9")
    d = os.path.join(tmp, "dtype_shards")
    os.makedirs(d)
    write_dense(os.path.join(d, "a.h5"), ok, y01)
    write_dense(os.path.join(d, "b.h5"), ok.astype(np.float64), y01)
    add("shard_dtype_mismatch", d, "b.h5: shard schema differs from")
    d = os.path.join(tmp, "d_shards")
    os.makedirs(d)
    write_dense(os.path.join(d, "a.h5"), ok, y01)
    write_dense(os.path.join(d, "b.h5"), ok[:, :2], y01)
    add("shard_width_mismatch", d, "b.h5: shard schema differs from")
    d = os.path.join(tmp, "kind_shards")
    os.makedirs(d)
    write_dense(os.path.join(d, "a.h5"), ok, y01)
    csr, _ = random_csr(10, 3, np.random.default_rng(1))
    write_csr(os.path.join(d, "b.h5"), csr, y01)
    add("shard_dense_vs_csr", d, "b.h5: shard schema differs from")
    p = os.path.join(tmp, "int_x.h5")
    with h5py.File(p, "w") as f:
        f["X"], f["y"] = ok.astype(np.int32), y01
    add("bad_dtype", p, "int_x.h5: /X has dtype int32; float32 or float64 expected")
    p = os.path.join(tmp, "nan.h5")
    bad = ok.copy()
    bad[8, 2] = np.nan
    write_dense(p, bad, y01)
    add("nan_in_x", p, "nan.h5: /X has NaN or inf in row 8")
    p = os.path.join(tmp, "inf_csr.h5")
    csr, _ = random_csr(10, 3, np.random.default_rng(2), density=0.9)
    row = nonempty_row(csr, 5)
    csr.data[csr.indptr[row]] = np.inf
    write_csr(p, csr, y01)
    add("inf_in_csr", p, f"inf_csr.h5: /X/data has NaN or inf in row {row}")
    p = os.path.join(tmp, "col.h5")
    csr, _ = random_csr(10, 3, np.random.default_rng(3), density=0.9)
    row = nonempty_row(csr, 6)
    csr.indices[csr.indptr[row]] = 7
    write_csr(p, csr, y01)
    add("csr_column_out_of_range", p, f"col.h5: /X/indices has column 7 outside [0, 3) in row {row}")
    p = os.path.join(tmp, "ptr.h5")
    csr, _ = random_csr(10, 3, np.random.default_rng(4), density=0.9)
    csr.indptr[5] = csr.indptr[6] + 1  # row 5 would have a negative length
    csr.indptr[6] = csr.indptr[5] - 1
    write_csr(p, csr, y01)
    add("csr_indptr_decreasing", p, "ptr.h5: /X/indptr decreases at row 5")
    p = os.path.join(tmp, "noshape.h5")
    csr, _ = random_csr(10, 3, np.random.default_rng(5))
    write_csr(p, csr, y01)
    with h5py.File(p, "r+") as f:
        del f["X"].attrs["shape"]
    add("csr_no_shape", p, "noshape.h5: CSR group /X has no 'shape' attribute")
    p = os.path.join(tmp, "labels2.h5")
    write_dense(p, ok, np.array([0, 1, 1, 0, 2, 0, 1, 0, 1, 1], np.float32))
    add("binary_label_out_of_range", p, "labels2.h5: /y[4] = 2.0; binary labels must be 0/1")
    p = os.path.join(tmp, "mixed.h5")
    write_dense(p, ok, np.array([0, 1, 1, 0, 1, 0, 1, 0, -1, 1], np.float32))
    add("binary_labels_mix_0_and_minus1", p, "mixed.h5: /y[8] = -1 but")
    p = os.path.join(tmp, "neg_class.h5")
    write_dense(p, ok, np.array([0, 1, 2, 0, 1, 0, 1, -3, 1, 1], np.int64))
    add("class_label_negative", p, "neg_class.h5: /y[7] = -3; class labels must be integers", "classes")
    p = os.path.join(tmp, "empty.h5")
    write_dense(p, ok[:0], y01[:0])
    add("zero_rows", p, "empty.h5: /X has zero rows")
    p = os.path.join(tmp, "trunc.h5")
    write_dense(p, np.random.default_rng(0).standard_normal((20000, 8)), np.zeros(20000))
    with open(p, "r+b") as fh:
        fh.truncate(os.path.getsize(p) // 2)
    add("truncated_file", p, "trunc.h5: ")  # text checked for 'truncated or corrupt' below
    p = os.path.join(tmp, "garbage.h5")
    with open(p, "wb") as fh:
        fh.write(b"label,f1,f2\n1,0.5,0.25\n")
    add("not_hdf5", p, "garbage.h5: not an HDF5 file")
    return cases


def test_bad_inputs_raise_clear_errors(tmp_path):
    cases = bad_inputs(str(tmp_path))
    assert [c[0] for c in cases] == BAD_CASE_NAMES
    for case, spec, labels, text in cases:
        with pytest.raises(MpidmlError) as info:
            for r in range(2):
                load_shard(spec, 2, r, labels=labels)
        assert text in str(info.value), (case, str(info.value))
        if case == "truncated_file":
            assert "truncated or corrupt" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file; see test_data_bad_input_mpi (capabilities dropped)")
def test_unreadable_file(tmp_path):
    p = str(tmp_path / "secret.h5")
    write_dense(p, np.ones((3, 2), np.float32), np.zeros(3, np.float32))
    os.chmod(p, 0)
    with pytest.raises(MpidmlError, match="permission denied"):
        load_shard(p, 1, 0)


@pytest.mark.parametrize("sparse", [False, True])
def test_feature_blocks_partition_the_columns(tmp_path, sparse):
    from mpidml.data.loader import load_feature_block

    spec, X, y = make_set(tmp_path, "f", [9, 4], d=7, sparse=sparse)
    for p in (1, 2, 3, 4, 9):
        blocks = [load_feature_block(spec, p, r) for r in range(p)]
        assert [b.columns for b in blocks] == [feature_columns(7, p, r) for r in range(p)]
        np.testing.assert_array_equal(np.hstack([dense_of(b.X) for b in blocks]), X)
        for b in blocks:
            np.testing.assert_array_equal(b.y, y)
            assert b.n == 13 and b.d == b.columns[1] - b.columns[0]
