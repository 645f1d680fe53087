"""End-to-end under mpiexec: ``--model softmax|mlp|lsq`` and the new optimizer flags train
on multi-class / real-valued HDF5 files written here with h5py (labels from a random
teacher network), with identical replicas on every rank."""

import json
import sys

import h5py
import numpy as np
import pytest

from mpirun import run, run_mpi

D, K = 20, 4


def teacher_labels(X, seed=11):
    """Class = arg-max of a random ReLU teacher (20 → 32 → K), centred so classes are balanced."""
    rng = np.random.default_rng(seed)
    W1, W2 = rng.standard_normal((D, 32)), rng.standard_normal((32, K))
    T = np.maximum(X @ W1, 0) @ W2
    ref = np.maximum(rng.standard_normal((20000, D)) @ W1, 0) @ W2
    return (T - np.median(ref, axis=0)).argmax(axis=1)


def write(path, X, y):
    with h5py.File(path, "w") as f:
        f["X"] = X
        f["y"] = y


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mc")
    rng = np.random.default_rng(5)
    out = {}
    for split, n in (("train", 8000), ("test", 2000)):
        X = rng.standard_normal((n, D)).astype(np.float32)
        y = teacher_labels(X)
        out[split] = str(d / f"{split}.h5")
        write(out[split], X, y.astype(np.int32))
        out[f"{split}_chance"] = np.bincount(y, minlength=K).max() / n
        w = np.linspace(-1, 1, D)
        out[f"{split}_lsq"] = str(d / f"{split}_lsq.h5")
        write(out[f"{split}_lsq"], X, (X @ w + 0.5 + 0.1 * rng.standard_normal(n)).astype(np.float32))
    out["dir"] = d
    return out


def train(p, files, name, *args, lsq=False):
    metrics = str(files["dir"] / f"{name}.jsonl")
    sfx = "_lsq" if lsq else ""
    res = run_mpi(p, ["-m", "mpidml.train", "--data", files["train" + sfx], "--test", files["test" + sfx],
                      "--metrics", metrics, "-q", *args], timeout=120)
    assert res.returncode == 0, res.output
    with open(metrics) as fh:
        return res, [json.loads(line) for line in fh]


def test_softmax_trains_p3(files):
    res, recs = train(3, files, "softmax", "--model", "softmax", "--epochs", "4", "--batch-size", "128",
                      "--lr", "0.2", "--optimizer", "nesterov", "--warmup-steps", "20",
                      "--lr-schedule", "step", "--lr-decay-every", "150", "--lr-gamma", "0.5")
    header, summary = recs[0], recs[-1]
    assert header["n_classes"] == K and header["model"] == "softmax"
    assert summary["objective_initial"] == pytest.approx(np.log(K), abs=1e-6)  # zero init
    assert summary["objective"] < 0.7 * np.log(K)  # 0.81 at the time of writing
    assert summary["test_accuracy"] > files["test_chance"] + 0.3
    assert summary["params_identical"] is True
    assert "softmax K=4" in res.stdout and "replicas identical: yes" in res.stdout


def test_mlp_trains_p2_and_beats_softmax(files):
    _, soft = train(2, files, "soft2", "--model", "softmax", "--epochs", "4", "--batch-size", "128",
                    "--lr", "0.2")
    res, recs = train(2, files, "mlp", "--model", "mlp", "--hidden", "64,32", "--epochs", "4",
                      "--batch-size", "128", "--lr", "0.1", "--optimizer", "momentum",
                      "--weight-decay", "1e-4", "--lr-reference-batch", "128")
    header, summary = recs[0], recs[-1]
    assert header["nparams"] == 20 * 64 + 64 + 64 * 32 + 32 + 32 * 4 + 4
    assert summary["objective"] < 0.4 * np.log(K)
    assert summary["test_accuracy"] > files["test_chance"] + 0.4
    assert summary["test_accuracy"] > soft[-1]["test_accuracy"] + 0.03  # nonlinear teacher
    assert summary["params_identical"] is True
    assert "mlp 64-32-4" in res.stdout


def test_lsq_adam_p2(files):
    res, recs = train(2, files, "lsq", "--model", "lsq", "--epochs", "5", "--batch-size", "256",
                      "--lr", "0.05", "--optimizer", "adam", lsq=True)
    summary = recs[-1]
    assert summary["test_rmse"] < 0.2  # noise level 0.1; predicting the mean gives ~3.4
    assert summary["params_identical"] is True and "test rmse" in res.stdout


def test_bad_model_flags_fail_cleanly(files):
    res = run_mpi(2, ["-m", "mpidml.train", "--data", files["train"], "--model", "mlp", "--hidden", "64,x"],
                  timeout=60)
    assert res.returncode == 2 and "--hidden must be comma-separated" in res.stderr, res.output
    res = run_mpi(1, ["-m", "mpidml.train", "--data", files["train"], "--model", "logreg"], timeout=60)
    assert res.returncode == 2 and "binary labels must be 0/1 (or -1/+1)" in res.stderr, res.output


def test_help_lists_model_flags():
    res = run([sys.executable, "-m", "mpidml.train", "--help"], timeout=60)
    for flag in ("--model", "--hidden", "--optimizer", "--weight-decay", "--warmup-steps",
                 "--lr-decay-every", "--lr-reference-batch", "softmax", "adam"):
        assert flag in res.stdout, flag


def test_threads_per_rank_follow_the_node(files):
    """--threads auto splits the usable cores between the ranks of a node (the MLP's BLAS
    calls oversubscribed 2 cores with 4 ranks before: 30x slower); an explicit N wins and
    numba's pool really has N threads."""
    from mpidml.runtime.threads import usable_cores

    env = {"OMP_NUM_THREADS": "", "NUMBA_NUM_THREADS": str(max(2, usable_cores()))}
    args = ["-m", "mpidml.train", "--data", files["train"], "--model", "softmax", "--epochs", "1"]
    res = run_mpi(2, [*args, "--metrics", str(files["dir"] / "t_auto.jsonl")], timeout=120, env=env)
    assert res.returncode == 0, res.output
    want = max(1, usable_cores() // 2)
    assert f"{want} thread(s) per rank (auto; {usable_cores()} usable core(s), 2 rank(s) on this node)" \
        in res.stdout, res.stdout
    header = json.loads(open(files["dir"] / "t_auto.jsonl").readline())
    applied = header["threads"].pop("applied")
    assert header["threads"] == {"threads": want, "cores": usable_cores(), "local_ranks": 2, "source": "auto"}
    assert applied["numba"] == want and all(v == want for v in applied.values()), applied
    res = run_mpi(1, [*args, "--threads", "2", "--metrics", str(files["dir"] / "t2.jsonl")], timeout=120, env=env)
    assert res.returncode == 0 and "2 thread(s) per rank (--threads;" in res.stdout, res.output
    applied = json.loads(open(files["dir"] / "t2.jsonl").readline())["threads"]["applied"]
    assert applied["numba"] == 2 and any(k.startswith(("openblas", "mkl", "blis")) for k in applied), applied
    res = run_mpi(1, [*args, "--threads", "0"], timeout=60, env=env)
    assert res.returncode == 2 and "--threads must be 'auto' or a positive integer" in res.stderr, res.output
