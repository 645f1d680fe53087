"""64-bit CSR column indices (hashed feature spaces beyond 2**31): libsvm conversion picks
int32 or int64 by the largest column without allocating anything of size d; inspect and
the loaders keep int64; every CSR kernel gives the same loss, metric and gradient with int32
and int64 indices up to rounding (they compile per index dtype, and ``fastmath`` reassociation
lets LLVM vectorise the two differently: bits may differ); training on a CSR file with int64
indices gives the run of the int32 file to rounding."""

import json
import os
import tracemalloc

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from mpidml.data.__main__ import main
from mpidml.data.convert import convert
from mpidml.data.layout import CSRMatrix, open_dataset
from mpidml.data.loader import RowReader, load_shard
from mpidml.data.writer import DataSetWriter, write_csr
from mpidml.models import make_model

from mpirun import run_mpi

BIG = 3_000_000_000   # > 2**31: needs int64 indices


def _svm(tmp_path, big_at_end=True):
    lines = ["1 1:0.5 3:2", "-1 2:1.5", "1 4:1 9:-2", "-1", "1 2:3"]
    big = f"1 5:1 {BIG}:4.5"    # 1-based: column BIG - 1, so d = BIG
    lines = lines + [big] if big_at_end else [big] + lines
    src = tmp_path / ("end.svm" if big_at_end else "start.svm")
    src.write_text("\n".join(lines) + "\n")
    return str(src)


@pytest.mark.parametrize("big_at_end", [True, False])
def test_convert_libsvm_beyond_int32(tmp_path, big_at_end):
    src, dst = _svm(tmp_path, big_at_end), str(tmp_path / "big.h5")
    tracemalloc.start()
    # block_rows=2: with the big column last, three int32 blocks are written before it
    # arrives and the indices are widened mid-stream
    s = convert(src, dst, block_rows=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20, peak     # nothing of size d (3e9) was allocated
    assert (s["rows"], s["d"], s["nnz"], s["index_dtype"]) == (6, BIG, 8, "int64")
    with h5py.File(dst) as f:
        assert f["X/indices"].dtype == np.int64 and sorted(f["X"]) == ["data", "indices", "indptr"]
        assert tuple(f["X"].attrs["shape"]) == (6, BIG)
        idx, ptr, data = f["X/indices"][:], f["X/indptr"][:], f["X/data"][:]
    rows = [idx[ptr[i]:ptr[i + 1]].tolist() for i in range(6)]
    small = [[0, 2], [1], [3, 8], [], [1]]
    assert rows == (small + [[4, BIG - 1]] if big_at_end else [[4, BIG - 1]] + small)
    assert sorted(data.tolist()) == sorted([0.5, 2, 1.5, 1, -2, 3, 1, 4.5])
    # loaders: whole set, rank ranges and explicit row lists keep int64 and the columns
    one = load_shard(dst, 1, 0)
    assert one.X.indices.dtype == np.int64 and one.d == BIG and one.X.indices.max() == BIG - 1
    parts = [load_shard(dst, 3, r) for r in range(3)]
    assert all(p.X.indices.dtype == np.int64 for p in parts)
    assert np.concatenate([p.X.indices for p in parts]).tolist() == idx.tolist()
    with RowReader(open_dataset(dst)) as reader:
        X, y = reader.read_rows(np.array([5, 0, 5]))
    assert X.indices.dtype == np.int64 and X.shape == (3, BIG)
    assert [X.indices[X.indptr[i]:X.indptr[i + 1]].tolist() for i in range(3)] == [rows[5], rows[0], rows[5]]


def test_inspect_and_cli_name_the_index_dtype(tmp_path, capsys):
    src, dst = _svm(tmp_path), str(tmp_path / "big.h5")
    assert main(["convert", src, dst]) == 0
    assert "6 x 3000000000 CSR float32, nnz 8, indices int64" in capsys.readouterr().out
    assert main(["inspect", dst]) == 0
    out = capsys.readouterr().out
    assert "6 rows x 3000000000 features" in out and "indices int64" in out
    assert main(["inspect", dst, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["d"] == BIG and info["index_dtype"] == "int64"


def test_small_indices_stay_int32(tmp_path):
    (tmp_path / "s.svm").write_text("1 1:1 7:2\n0 2:1\n")
    s = convert(str(tmp_path / "s.svm"), str(tmp_path / "s.h5"))
    assert (s["d"], s["index_dtype"]) == (7, "int32")
    # --n-features beyond 2**31 with small columns: still int32 (the columns decide)
    s = convert(str(tmp_path / "s.svm"), str(tmp_path / "n.h5"), n_features=BIG)
    assert (s["d"], s["index_dtype"]) == (BIG, "int32")
    assert load_shard(str(tmp_path / "n.h5"), 1, 0).X.indices.dtype == np.int32


def test_explicit_int32_refuses_a_big_column(tmp_path):
    X = CSRMatrix(np.ones(1, np.float32), np.array([BIG - 1], np.int64), np.array([0, 1]), (1, BIG))
    with pytest.raises(ValueError, match="does not fit the int32 indices"):
        with DataSetWriter(str(tmp_path / "x.h5"), BIG, sparse=True, index_dtype=np.int32) as w:
            w.append(X, np.ones(1))
    assert not os.path.exists(tmp_path / "x.h5")


# How far the int32 and int64 compilations may differ. The kernels compile once per index dtype
# and run with fastmath "reassoc": LLVM may vectorise (regroup) each sum differently, so every sum
# of k terms may round differently by up to ~k ulps of the sum of |terms|. Rows here have ~9
# nonzeros and the batch 80 rows; 64 ulps of the largest value (relative to the largest |entry|,
# since gradient entries can cancel to near 0) bounds that with margin and is still far below any
# indexing bug (a wrong column changes entries at O(1) relative). Seen on an AVX-512 host: logreg
# and lsq losses 3e-9 apart in float32 (~0.03 ulps of the loss: the per-row margins differ).
ULPS = 64


def assert_close_to_rounding(a, b, dtype, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    tol = ULPS * np.finfo(dtype).eps
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(np.abs(a).max(), 1e-30), err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,labels", [("logreg", "binary"), ("softmax", "classes"), ("lsq", "real"),
                                         ("mlp", "classes")])
def test_csr_kernels_take_int64_indices(name, labels, dtype):
    rng = np.random.default_rng(3)
    n, d = 120, 30
    X = np.where(rng.random((n, d)) < 0.3, rng.standard_normal((n, d)), 0).astype(dtype)
    y = ((rng.random(n) < 0.5) if labels == "binary" else rng.integers(0, 3, n) if labels == "classes"
         else rng.standard_normal(n)).astype(np.int64 if labels == "classes" else dtype)
    csr = sp.csr_matrix(X)
    rows = rng.permutation(n)[:80].astype(np.int64)
    model = make_model(name, d, n_classes=3, dtype=dtype, hidden=(8,))
    params = model.init_params(seed=1)
    assert params.dtype == dtype
    params += (0.1 * rng.standard_normal(params.size)).astype(params.dtype)
    out = {}
    for idt in (np.int32, np.int64):
        C = CSRMatrix(csr.data, csr.indices.astype(idt), csr.indptr.astype(np.int64), X.shape)
        assert C.indices.dtype == idt
        g = np.full_like(params, np.nan)    # every entry must be written
        out[idt] = (model.loss_grad_sum(C, y, rows, params, g), g, model.metric_sum(C, y, rows, params))
    (loss32, g32, metric32), (loss64, g64, metric64) = out[np.int32], out[np.int64]
    assert np.isfinite(g32).all() and np.isfinite(g64).all()
    assert_close_to_rounding(loss32, loss64, dtype, "loss")
    assert_close_to_rounding(metric32, metric64, dtype, "metric")
    assert_close_to_rounding(g32, g64, dtype, "gradient")
    # the check can fail: one nonzero of a batch row moved to a column that row does not use
    r = next(int(r) for r in rows if csr.indptr[r + 1] > csr.indptr[r])
    row_cols = set(csr.indices[csr.indptr[r]:csr.indptr[r + 1]].tolist())
    moved = csr.indices.astype(np.int64)
    moved[csr.indptr[r]] = min(set(range(d)) - row_cols)
    g = np.empty_like(params)
    model.loss_grad_sum(CSRMatrix(csr.data, moved, csr.indptr.astype(np.int64), X.shape), y, rows, params, g)
    with pytest.raises(AssertionError):
        assert_close_to_rounding(g32, g, dtype, "gradient with a moved column")


def test_training_on_int64_indices_matches_int32(tmp_path):
    """Same CSR data written with int32 and with int64 indices: the same training run to rounding (p = 2)."""
    rng = np.random.default_rng(7)
    n, d = 3000, 40
    w_true = rng.standard_normal(d)
    X = np.where(rng.random((n, d)) < 0.25, rng.standard_normal((n, d)), 0).astype(np.float32)
    y = (X @ w_true + 0.3 * rng.standard_normal(n) > 0).astype(np.float32)
    csr = sp.csr_matrix(X)
    finals = {}
    for idt in (np.int32, np.int64):
        path = str(tmp_path / f"{np.dtype(idt).name}.h5")
        write_csr(path, CSRMatrix(csr.data, csr.indices.astype(idt), csr.indptr.astype(np.int64), X.shape), y)
        with h5py.File(path) as f:
            assert f["X/indices"].dtype == idt
        metrics = str(tmp_path / f"{np.dtype(idt).name}.jsonl")
        res = run_mpi(2, ["-m", "mpidml.train", "--data", path, "--test", path, "--epochs", "3",
                          "--batch-size", "128", "--metrics", metrics, "-q"], timeout=120)
        assert res.returncode == 0, res.output
        with open(metrics) as fh:
            recs = [json.loads(line) for line in fh]
        finals[idt] = [r for r in recs if "objective" in r]
    a, b = finals[np.int32], finals[np.int64]
    # the kernels compile separately per index dtype (vectorised differently): equal to rounding
    np.testing.assert_allclose([r["objective"] for r in a], [r["objective"] for r in b], rtol=1e-5)
    assert a[-1]["objective"] < 0.9 * a[0]["objective"]      # it learned something
