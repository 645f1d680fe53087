"""``python -m mpidml.data synth|convert|inspect`` (no MPI) and the synthetic generators."""

import json
import os
import sys

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from mpidml.data.__main__ import main
from mpidml.data.convert import convert
from mpidml.data.loader import load_shard
from mpidml.data.synth import binary_dense_blocks, make_binary_dense, write_blocks
from mpidml.runtime.errors import MpidmlError

from mpirun import run


def test_synth_kinds_and_shards(tmp_path, capsys):
    out = str(tmp_path / "ck")
    assert main(["synth", "clicklog", out, "-n", "3000", "--d", "5000", "--shards", "3", "--seed", "4"]) == 0
    assert sorted(os.listdir(out)) == ["part-00000.h5", "part-00001.h5", "part-00002.h5"]
    s = load_shard(out, 1, 0)
    assert s.sparse and s.n == 3000 and s.d == 5000 and s.X.indices.dtype == np.int32
    nnz_rows = np.diff(s.X.indptr)
    assert 5 < nnz_rows.mean() < 25 and nnz_rows.min() >= 1
    col_counts = np.bincount(s.X.indices, minlength=5000)
    top = np.sort(col_counts)[::-1]
    assert top[0] > 20 * np.median(col_counts[col_counts > 0])  # Zipf: a few very popular features
    assert 0.02 < s.y.mean() < 0.5 and set(np.unique(s.y)) <= {0.0, 1.0}
    mc = str(tmp_path / "mc.h5")
    assert main(["synth", "multiclass", mc, "-n", "4000", "-k", "5", "--d", "12", "--dtype", "float64"]) == 0
    m = load_shard(mc, 1, 0, labels="classes")
    assert m.n_classes == 5 and m.X.dtype == np.float64 and m.y.dtype == np.int64
    assert np.bincount(m.y).min() > 100  # every class present
    # the teacher is learnable: a linear softmax fit beats the majority class clearly
    Xb = np.hstack([m.X, np.ones((m.n, 1))])
    W = np.linalg.lstsq(Xb, np.eye(5)[m.y], rcond=None)[0]
    assert (np.argmax(Xb @ W, axis=1) == m.y).mean() > np.bincount(m.y).max() / m.n + 0.1
    b = str(tmp_path / "b.h5")
    assert main(["synth", "binary", b, "-n", "100", "--d", "3"]) == 0
    capsys.readouterr()
    assert main(["synth", "binary", b, "-n", "0"]) == 2
    assert "--rows must be >= 1" in capsys.readouterr().err


def test_block_generator_matches_make_binary_dense_across_shards(tmp_path):
    make_binary_dense(str(tmp_path / "one.h5"), 20000, 6, seed=3)
    write_blocks(str(tmp_path / "many"), binary_dense_blocks(20000, 6, seed=3), 20000, 6,
                 np.float32, np.float32, shards=4)
    a, b = load_shard(str(tmp_path / "one.h5"), 1, 0), load_shard(str(tmp_path / "many"), 1, 0)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_convert_libsvm_streams_blocks(tmp_path):
    src = tmp_path / "a.svm"
    src.write_text("1 3:2.5 1:0.5\n-1 2:1 # comment\n\n+1 qid:7 5:-1\n-1\n1 1:1 2:2 3:3 4:4 5:5\n")
    dst = str(tmp_path / "a.h5")
    s = convert(str(src), dst, block_rows=2)  # 5 rows in 3 blocks
    assert (s["rows"], s["d"], s["nnz"]) == (5, 5, 9)
    with h5py.File(dst) as f:
        assert tuple(f["X"].attrs["shape"]) == (5, 5)
        ref = sp.csr_matrix((f["X/data"][:], f["X/indices"][:], f["X/indptr"][:]), shape=(5, 5)).toarray()
    expect = np.zeros((5, 5), np.float32)
    expect[0, [0, 2]] = [0.5, 2.5]
    expect[1, 1] = 1
    expect[2, 4] = -1
    expect[4] = [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(ref, expect)
    shard = load_shard(dst, 1, 0)
    assert shard.labels_mapped and shard.y.tolist() == [1, 0, 1, 0, 1]
    with pytest.raises(MpidmlError, match="line 1: feature index 0 out of range"):
        (tmp_path / "z.svm").write_text("1 0:1\n")
        convert(str(tmp_path / "z.svm"), str(tmp_path / "z.h5"), zero_based=False)
    assert not os.path.exists(tmp_path / "z.h5")
    (tmp_path / "z.svm").write_text("1 0:1\n0 4:1\n")
    assert convert(str(tmp_path / "z.svm"), str(tmp_path / "z.h5"), zero_based=True)["d"] == 5


def test_convert_csv_with_header_and_label_name(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 3))
    y = rng.integers(0, 3, 7)
    lines = ["f1,label,f2,f3"] + [f"{float(a)!r},{int(c)},{float(b)!r},{float(e)!r}" for (a, b, e), c in zip(X, y)]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    dst = str(tmp_path / "c.h5")
    convert(str(tmp_path / "c.csv"), dst, dtype=np.float64, label_column="label",
            label_dtype=np.int64, block_rows=3)
    s = load_shard(dst, 1, 0, labels="classes")
    np.testing.assert_array_equal(s.X, X)
    np.testing.assert_array_equal(s.y, y)
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    with pytest.raises(MpidmlError, match="bad.csv: line 2, column column 2: 'x' is not a number"):
        convert(str(tmp_path / "bad.csv"), str(tmp_path / "bad.h5"), label_column="0")


@pytest.mark.parametrize("compressed", [False, True])
def test_convert_npz_dense_and_scipy_csr(tmp_path, compressed):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4))
    y = rng.integers(0, 2, 50).astype(np.float32)
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "d.npz", X=X, y=y)
    convert(str(tmp_path / "d.npz"), str(tmp_path / "d.h5"), block_rows=7)
    s = load_shard(str(tmp_path / "d.h5"), 1, 0)
    assert s.X.dtype == np.float64  # float arrays keep their dtype
    np.testing.assert_array_equal(s.X, X)
    np.testing.assert_array_equal(s.y, y)
    A = sp.random(50, 30, density=0.1, format="csr", random_state=2, dtype=np.float32)
    sp.save_npz(tmp_path / "s.npz", A, compressed=compressed)
    np.save(tmp_path / "labels.npy", y)
    convert(str(tmp_path / "s.npz"), str(tmp_path / "s.h5"), labels_path=str(tmp_path / "labels.npy"),
            block_rows=8)
    s = load_shard(str(tmp_path / "s.h5"), 1, 0)
    assert s.sparse and s.X.dtype == np.float32
    np.testing.assert_array_equal(s.X.toarray(), A.toarray())


def test_inspect(tmp_path, capsys):
    path = str(tmp_path / "i.h5")
    make_binary_dense(path, 1000, 5, seed=1)
    assert main(["inspect", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["rows"], info["d"], info["dtype"], info["layout"]) == (1000, 5, "float32", "dense")
    assert sum(info["labels"]["counts"].values()) == 1000 and info["shards"][0]["chunks"] == [1000, 5]
    assert main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert "1000 rows x 5 features, dense float32" in text and "label balance: 0.0:" in text
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err


def test_help_lists_commands():
    res = run([sys.executable, "-m", "mpidml.data", "--help"], timeout=60)
    assert res.returncode == 0
    for word in ("synth", "convert", "inspect", "check", "Schema"):
        assert word in res.stdout
    for cmd, words in (("synth", ["clicklog", "multiclass", "--shards", "Zipf"]),
                       ("convert", ["libsvm", "--zero-based", "--label-column", "--block-rows"])):
        res = run([sys.executable, "-m", "mpidml.data", cmd, "--help"], timeout=60)
        assert res.returncode == 0 and all(w in res.stdout for w in words), res.stdout
