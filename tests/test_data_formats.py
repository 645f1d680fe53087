"""Issue 19: a user's own data in (unlabelled CSV, string labels, NA, categoricals, tabs,
zero-based libsvm, .npy) and predictions out (no labels needed; .h5/.csv/.tsv/.npy with
class probabilities)."""

import csv
import json
import sys

import h5py
import numpy as np
import pytest

from mpidml.data.__main__ import main as data_main
from mpidml.data.convert import convert
from mpidml.data.layout import open_dataset
from mpidml.data.loader import load_shard
from mpidml.runtime.errors import MpidmlError

from mpirun import run, run_mpi

# ------------------------------------------------------------------ convert: label column

def test_unlabelled_csv_is_refused_without_a_label_column(tmp_path, capsys):
    src = tmp_path / "new.csv"
    src.write_text("a,b,c\n1,2,3\n4,5,6\n")
    assert data_main(["convert", str(src), str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err
    assert "new.csv" in err and "--label-column" in err and "label/y/target/class" in err
    assert not (tmp_path / "x.h5").exists()
    (tmp_path / "nohead.csv").write_text("1,2,3\n4,5,6\n")
    assert data_main(["convert", str(tmp_path / "nohead.csv"), str(tmp_path / "x.h5")]) == 2
    assert "has no header" in capsys.readouterr().err
    # --label-column none: every column is a feature, no /y
    assert data_main(["convert", str(src), str(tmp_path / "u.h5"), "--label-column", "none"]) == 0
    assert "unlabelled (no /y)" in capsys.readouterr().out
    with h5py.File(tmp_path / "u.h5") as f:
        assert "y" not in f and f["X"].shape == (2, 3)
    ds = open_dataset(str(tmp_path / "u.h5"))
    assert not ds.labelled
    s = load_shard(str(tmp_path / "u.h5"), 1, 0, labels="none")
    np.testing.assert_array_equal(s.X, [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(MpidmlError, match=r"u.h5: missing dataset /y: has no labels .*--label-column"):
        load_shard(str(tmp_path / "u.h5"), 1, 0, labels="binary")
    assert data_main(["inspect", str(tmp_path / "u.h5")]) == 0
    assert "labels: none" in capsys.readouterr().out
    # a header column named target is the label without a flag
    (tmp_path / "t.csv").write_text("a,Target,b\n1,0,3\n4,1,6\n")
    s = convert(str(tmp_path / "t.csv"), str(tmp_path / "t.h5"))
    assert s["label"] == "Target" and s["d"] == 2
    np.testing.assert_array_equal(load_shard(str(tmp_path / "t.h5"), 1, 0).y, [0, 1])


def test_training_on_an_unlabelled_file_exits_2_naming_it(tmp_path):
    (tmp_path / "u.csv").write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(40)))
    convert(str(tmp_path / "u.csv"), str(tmp_path / "u.h5"), label_column="none")
    res = run_mpi(2, ["-m", "mpidml.train", "--data", str(tmp_path / "u.h5"), "--epochs", "1", "-q"],
                  timeout=120)
    assert res.returncode == 2, res.output
    assert "u.h5: missing dataset /y: has no labels" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------ convert: libsvm index base

def test_zero_based_libsvm_from_scikit_learn_is_detected_or_asked(tmp_path, capsys):
    from sklearn.datasets import dump_svmlight_file

    X = np.zeros((4, 6))
    X[0, 1], X[1, 5], X[2, 2], X[3, 0] = 1, 2, 3, 4
    y = np.array([0, 1, 0, 1])
    dump_svmlight_file(X, y, str(tmp_path / "z.svm"))             # zero-based, has index 0
    assert data_main(["convert", str(tmp_path / "z.svm"), str(tmp_path / "z.h5")]) == 0
    out = capsys.readouterr().out
    assert "zero-based (index 0 on line 4) -> d = 6" in out
    np.testing.assert_array_equal(load_shard(str(tmp_path / "z.h5"), 1, 0).X.toarray(), X)
    # no index 0 in the file: one-based by default, said so, and --zero-based yes keeps d
    dump_svmlight_file(X[:3], y[:3], str(tmp_path / "n.svm"))
    assert data_main(["convert", str(tmp_path / "n.svm"), str(tmp_path / "n.h5")]) == 0
    out = capsys.readouterr().out
    assert "one-based (no index 0" in out and "--zero-based yes" in out and "d = 5" in out
    assert data_main(["convert", str(tmp_path / "n.svm"), str(tmp_path / "n.h5"), "--zero-based", "yes"]) == 0
    assert "zero-based -> d = 6" in capsys.readouterr().out
    np.testing.assert_array_equal(load_shard(str(tmp_path / "n.h5"), 1, 0).X.toarray(), X[:3])
    # the file's own comment decides, even without an index 0
    dump_svmlight_file(X[:3], y[:3], str(tmp_path / "c.svm"), comment="from sklearn")
    assert convert(str(tmp_path / "c.svm"), str(tmp_path / "c.h5"))["d"] == 6
    dump_svmlight_file(X[:3], y[:3], str(tmp_path / "o.svm"), zero_based=False, comment="x")
    assert convert(str(tmp_path / "o.svm"), str(tmp_path / "o.h5"))["d"] == 6


# ------------------------------------------------------------------ convert: real-world CSV

PENGUINS = """species,island,bill_length_mm,body_mass_g,sex
Adelie,Torgersen,39.1,3750,male
Adelie,Torgersen,NA,NA,NA
Gentoo,Biscoe,46.1,4500,female
Chinstrap,Dream,46.5,3500,female
"Adelie","Biscoe",37.8,,male
Gentoo,Biscoe,50.0,5700,male
"""


def test_csv_string_labels_na_and_categoricals(tmp_path, capsys):
    src = tmp_path / "penguins.csv"
    src.write_text(PENGUINS)
    dst = str(tmp_path / "p.h5")
    assert data_main(["convert", str(src), dst, "--label-column", "species"]) == 2
    err = capsys.readouterr().err
    assert "line 3, column bill_length_mm: missing value" in err and "--na drop" in err
    assert data_main(["convert", str(src), dst, "--label-column", "species", "--na", "drop"]) == 2
    assert "line 2, column island: 'Torgersen' is not a number" in capsys.readouterr().err
    assert data_main(["convert", str(src), dst, "--label-column", "species", "--na", "drop",
                      "--categorical", "auto"]) == 0
    out = capsys.readouterr().out
    assert "'Adelie' -> 0, 'Chinstrap' -> 1, 'Gentoo' -> 2" in out and "dropped 2 row(s)" in out
    s = load_shard(dst, 1, 0, labels="classes")
    assert s.y.tolist() == [0, 2, 1, 2] and s.n_classes == 3
    # island one-hot (Biscoe, Dream, Torgersen), two numbers, sex one-hot (female, male)
    np.testing.assert_allclose(s.X, [[0, 0, 1, 39.1, 3750, 0, 1], [1, 0, 0, 46.1, 4500, 1, 0],
                                        [0, 1, 0, 46.5, 3500, 1, 0], [1, 0, 0, 50.0, 5700, 0, 1]], rtol=1e-7)
    with h5py.File(dst) as f:
        assert json.loads(f["X"].attrs["label_names"]) == ["Adelie", "Chinstrap", "Gentoo"]
        assert json.loads(f["X"].attrs["categories"])["island"] == ["Biscoe", "Dream", "Torgersen"]
    # a tab written as backslash-t on the command line is a tab
    (tmp_path / "t.txt").write_text(PENGUINS.replace(",", "\t"))
    assert data_main(["convert", str(tmp_path / "t.txt"), str(tmp_path / "t.h5"), "--delimiter", "\\t",
                      "--label-column", "0", "--na", "drop", "--categorical", "auto"]) == 0
    np.testing.assert_array_equal(load_shard(str(tmp_path / "t.h5"), 1, 0, labels="classes").X, s.X)
    # pandas' to_csv with its row index column: the unnamed index column can be ignored
    (tmp_path / "idx.csv").write_text(",f,label\n0,1.5,0\n1,2.5,1\n")
    s2 = convert(str(tmp_path / "idx.csv"), str(tmp_path / "idx.h5"), ignore_columns="0")
    assert s2["d"] == 1


def test_npy_inputs(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 4))
    y = rng.integers(0, 2, 30).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    convert(str(tmp_path / "X.npy"), str(tmp_path / "a.h5"), labels_path=str(tmp_path / "y.npy"), block_rows=7)
    s = load_shard(str(tmp_path / "a.h5"), 1, 0)
    np.testing.assert_array_equal(s.X, X)
    np.testing.assert_array_equal(s.y, y)
    with pytest.raises(MpidmlError, match="where are the labels"):
        convert(str(tmp_path / "X.npy"), str(tmp_path / "b.h5"))
    convert(str(tmp_path / "X.npy"), str(tmp_path / "b.h5"), label_column="none")
    assert not open_dataset(str(tmp_path / "b.h5")).labelled
    rec = np.zeros(30, dtype=[("f1", "f8"), ("target", "i8"), ("f2", "f4")])
    rec["f1"], rec["target"], rec["f2"] = X[:, 0], y, X[:, 1]
    np.save(tmp_path / "rec.npy", rec)
    convert(str(tmp_path / "rec.npy"), str(tmp_path / "r.h5"))
    s = load_shard(str(tmp_path / "r.h5"), 1, 0)
    np.testing.assert_allclose(s.X, np.column_stack([X[:, 0], X[:, 1].astype(np.float32)]))
    np.testing.assert_array_equal(s.y, y)


# ------------------------------------------------------------------ predict

def _softmax_model(path, d, k, seed=0):
    from mpidml.models import make_model
    from mpidml.saved import save_model

    m = make_model("softmax", d, k, np.dtype(np.float64), 0.0, ())
    params = np.random.default_rng(seed).standard_normal(m.nparams)
    save_model(str(path), {"kind": "softmax", "d": d, "classes": k, "hidden": "", "dtype": "float64",
                           "label_names": ["Adelie", "Chinstrap", "Gentoo"][:k]},
               params, {"l2": 0.0}, {})
    v = m.views(params)
    return v["weight"], v["bias"]


def test_predict_an_unlabelled_file_to_every_format_at_p1_and_p3(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((23, 4))
    (tmp_path / "new.csv").write_text("a,b,c,d\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in X))
    assert convert(str(tmp_path / "new.csv"), str(tmp_path / "new.h5"), dtype=np.float64,
                   label_column="none")["labelled"] is False
    W, b = _softmax_model(tmp_path / "model.h5", 4, 3)
    Z = X @ W + b
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    for p in (1, 3):
        outs = {ext: tmp_path / f"pred{p}.{ext}" for ext in ("h5", "csv", "tsv", "npy")}
        for out in outs.values():
            res = run_mpi(p, ["-m", "mpidml.predict", str(tmp_path / "model.h5"), str(tmp_path / "new.h5"),
                              "-o", str(out)], timeout=120)
            assert res.returncode == 0, res.output
        with h5py.File(outs["h5"]) as f:
            np.testing.assert_array_equal(f["prediction"][:], P.argmax(1))
            np.testing.assert_allclose(f["proba"][:], P, rtol=1e-6)
        for ext, sep in (("csv", ","), ("tsv", "\t")):
            rows = list(csv.reader(open(outs[ext]), delimiter=sep))
            assert rows[0] == ["row", "prediction", "label", "proba_0", "proba_1", "proba_2"]
            assert len(rows) == 24 and [int(r[0]) for r in rows[1:]] == list(range(23))
            assert [int(r[1]) for r in rows[1:]] == P.argmax(1).tolist()
            assert rows[1][2] == ["Adelie", "Chinstrap", "Gentoo"][P[0].argmax()]
            np.testing.assert_allclose(np.array([r[3:] for r in rows[1:]], float), P, rtol=1e-6)
        a = np.load(outs["npy"])
        assert a.dtype.names == ("row", "prediction", "proba_0", "proba_1", "proba_2")
        np.testing.assert_allclose(np.column_stack([a[f"proba_{k}"] for k in range(3)]), P, rtol=1e-6)
    res = run([sys.executable, "-m", "mpidml.predict", str(tmp_path / "model.h5"), str(tmp_path / "new.h5"),
               "-o", str(tmp_path / "p.parquet")], timeout=60)
    assert res.returncode == 2 and "unknown output extension '.parquet'" in res.output
    help_text = run([sys.executable, "-m", "mpidml.predict", "--help"], timeout=60).stdout
    assert "labels are not needed" in help_text and ".csv" in help_text and "proba_0" in help_text


def test_predict_logreg_and_lsq_columns(tmp_path):
    from mpidml.data.writer import write_dense
    from mpidml.models import make_model
    from mpidml.predict import _columns
    from mpidml.saved import predict_proba, save_model

    X = np.random.default_rng(2).standard_normal((9, 3))
    for kind, names in (("logreg", ["row", "prediction", "proba_1"]), ("lsq", ["row", "prediction"])):
        m = make_model(kind, 3, 2, np.dtype(np.float64), 0.0, ())
        params = np.arange(m.nparams, dtype=np.float64) / 4
        pred, proba = predict_proba(kind, m, params, X)
        assert [n for n, _ in _columns(pred, proba)] == names
        z = X @ params[:3] + params[3]
        np.testing.assert_allclose(pred if kind == "lsq" else proba, z if kind == "lsq" else 1 / (1 + np.exp(-z)))
    save_model(str(tmp_path / "lr.h5"), {"kind": "logreg", "d": 3, "classes": 2, "hidden": "", "dtype": "float64"},
               params, {"l2": 0.0}, {})
    write_dense(str(tmp_path / "wrong.h5"), np.zeros((4, 5)), np.zeros(4))
    res = run_mpi(1, ["-m", "mpidml.predict", str(tmp_path / "lr.h5"), str(tmp_path / "wrong.h5"),
                      "-o", str(tmp_path / "o.csv")], timeout=120)
    assert res.returncode == 2 and "wrong.h5: 5 features, but the model" in res.output
