"""``--algo feature_parallel`` and ``--algo admm`` (issue 10) under mpiexec at p = 1..4:
feature-parallel gradients equal the data-parallel ones on the same batch (dense and
CSR, float32 and float64); both algorithms reach the reference optimum end to end;
ADMM resumes bit for bit; bad combinations are refused naming the flag."""

import json
import os

import numpy as np
import pytest

from mpidml.data.writer import write_csr, write_dense
from mpidml.train import TrainConfig

from datasets import make_set, sparse_binary
from mpirun import HERE, run_mpi
from reference import binary_problem, logreg_optimum

L2 = 1e-4
COMMON = {"epochs": 5, "batch_size": 256, "l2": L2, "seed": 1}


def sparse_problem(directory, n, d, seed):
    """A CSR binary set (15 % nonzeros) and its reference optimum."""
    X, dense, y = sparse_binary(n, d, 0.15, seed)
    path = os.path.join(directory, "csr-train.h5")
    write_csr(path, X, y)
    _, f_star = logreg_optimum(dense, y, L2)
    return path, f_star


def ridge_problem(directory, n, d, seed):
    """A dense regression set and the exact optimum of (1/n)Σ½(x·w + b − y)² + (l2/2)‖w‖²."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X @ rng.standard_normal(d) + 0.5 + 0.3 * rng.standard_normal(n)).astype(np.float32)
    path = os.path.join(directory, "lsq-train.h5")
    write_dense(path, X, y)
    A = np.hstack([X.astype(np.float64), np.ones((n, 1))])
    reg = L2 * np.diag(np.r_[np.ones(d), 0.0])
    theta = np.linalg.solve(A.T @ A / n + reg, A.T @ y / n)
    r = A @ theta - y
    return path, float(0.5 * np.mean(r * r) + 0.5 * L2 * theta[:d] @ theta[:d])


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    root = tmp_path_factory.mktemp("admmfp")
    grad_sets = []
    for name, sparse, dtype in [("dense32", False, np.float32), ("dense64", False, np.float64),
                                ("csr32", True, np.float32), ("csr64", True, np.float64)]:
        spec, _, _ = make_set(str(root / name), name, 57, d=13, sparse=sparse, dtype=dtype, seed=3)
        grad_sets.append([spec, np.dtype(dtype).name])
    dense = binary_problem(str(root), 8000, 2000, 20, seed=5, l2=L2)
    csr, csr_star = sparse_problem(str(root), 6000, 60, seed=9)
    lsq, lsq_star = ridge_problem(str(root), 6000, 15, seed=4)
    runs = [
        {"name": "fp_dense", "cfg": {**COMMON, "algo": "feature_parallel", "data": dense["train"],
                                     "test": dense["test"]}},
        {"name": "fp_csr", "cfg": {**COMMON, "algo": "feature_parallel", "data": csr}},
        {"name": "admm_logreg", "cfg": {**COMMON, "algo": "admm", "tau": 4, "admm_rho": 0.3, "data": dense["train"],
                                        "test": dense["test"]}},
        {"name": "admm_lsq", "cfg": {**COMMON, "algo": "admm", "tau": 4, "model": "lsq", "lr": 0.05,
                                     "data": lsq}},
    ]
    spec_path = str(root / "spec.json")
    with open(spec_path, "w") as fh:
        json.dump({"grad_sets": grad_sets, "runs": runs}, fh)
    return {"spec": spec_path, "dense": dense, "stars": {"fp_dense": dense["f_star"], "fp_csr": csr_star,
            "admm_logreg": dense["f_star"], "admm_lsq": lsq_star}}


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_feature_parallel_and_admm(problems, p):
    res = run_mpi(p, [os.path.join(HERE, "mpi_progs", "admm_fp_cases.py"), problems["spec"]], timeout=300)
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report["grads"]) == 4
    for g in report["grads"]:
        tol = 1e-5 if g["dtype"] == "float32" else 1e-12
        assert g["grad_rel_diff"] < tol and g["loss_rel_diff"] < tol, g
        assert g["correct_equal"] and g["assembled_exact"], g
        assert g["weights_per_rank"] == -(-13 // p) + 1, g          # ⌈d/p⌉ weights + the bias
    runs = {r["name"]: r for r in report["runs"]}
    for name, f_star in problems["stars"].items():
        r = runs[name]
        gap, start = r["objective"] - f_star, r["objective_initial"] - f_star
        assert -1e-6 <= gap <= 0.01 * start, (name, r, f_star)
        assert r["params_identical"], r
    assert abs(runs["fp_dense"]["metric"] - problems["dense"]["acc_star"]) <= 0.01
    assert abs(runs["admm_logreg"]["metric"] - problems["dense"]["acc_star"]) <= 0.01
    if p > 1:   # feature-parallel bytes are batch margins, not models
        assert runs["fp_dense"]["bytes"] > 0


def records(path):
    return [json.loads(line) for line in open(path)]


def test_admm_resume_bit_for_bit_and_memory_report(problems, tmp_path):
    """ADMM continues bit for bit after a crash (x_i, u_i, z and momentum restored); the
    feature-parallel run reports 1/p of the data-parallel model state per rank."""
    dense = problems["dense"]
    base = ["-m", "mpidml.train", "--data", dense["train"], "--epochs", "3", "--batch-size", "256", "-q",
            "--algo", "admm", "--tau", "4", "--checkpoint-every", "20"]
    a = run_mpi(2, base + ["--checkpoint-dir", str(tmp_path / "a"), "--metrics", str(tmp_path / "a.jsonl")])
    assert a.returncode == 0, a.output
    crash = run_mpi(2, base + ["--checkpoint-dir", str(tmp_path / "b"), "--inject-fault", "raise:1:45"])
    assert crash.returncode != 0
    b = run_mpi(2, base + ["--checkpoint-dir", str(tmp_path / "b"), "--resume", "--metrics", str(tmp_path / "b.jsonl")])
    assert b.returncode == 0, b.output
    ra, rb = records(tmp_path / "a.jsonl")[-1], records(tmp_path / "b.jsonl")[-1]
    assert rb["resumed_from_step"] == 40 and rb["params_digest"] == ra["params_digest"]
    # elastic: the 2-rank checkpoint continued on 3 ranks (x_i = z, u_i = 0)
    c = run_mpi(3, base + ["--checkpoint-dir", str(tmp_path / "b"), "--resume", "--epochs", "4",
                           "--resume-with-changes",
                           "--metrics", str(tmp_path / "c.jsonl")])
    assert c.returncode == 0 and "re-partitioned for 3 rank(s)" in c.stdout, c.output
    assert records(tmp_path / "c.jsonl")[-1]["objective"] < ra["objective"] + 1e-3
    # feature_parallel at p = 4: model state per rank vs sync's
    got = {}
    for algo in ("sync", "feature_parallel"):
        r = run_mpi(4, ["-m", "mpidml.train", "--data", dense["train"], "--epochs", "1", "-q", "--algo", algo,
                        "--metrics", str(tmp_path / f"{algo}.jsonl")])
        assert r.returncode == 0, r.output
        got[algo] = records(tmp_path / f"{algo}.jsonl")[0]
    assert "weights per rank 6 of 21" in got["feature_parallel"]["algo"]
    # params + gradient + momentum: (d/p + 1) vs (d + 1) floats each
    assert got["feature_parallel"]["model_bytes_per_rank"] * 21 == got["sync"]["model_bytes_per_rank"] * 6


@pytest.mark.parametrize("kw,expect", [
    ({"algo": "feature_parallel", "model": "mlp"}, "--algo feature_parallel splits the columns of a linear "
                                                   "model: it needs --model logreg, not mlp"),
    ({"algo": "admm", "model": "mlp"}, "--algo admm needs a convex --model (logreg, softmax, lsq), not mlp"),
    ({"algo": "admm", "admm_rho": 0.0}, "--admm-rho must be > 0"),
    ({"algo": "feature_parallel", "partition": "shuffle"}, "cannot be combined with --partition shuffle"),
    ({"algo": "sync", "hogwild_threads": 1, "optimizer": "sgd"}, "use --algo local_sgd or easgd or gossip"),
    ({"algo": "local_sgd", "hogwild_threads": 1}, "it needs --model logreg --optimizer sgd"),
    ({"algo": "local_sgd", "hogwild_threads": 10_000, "optimizer": "sgd"}, "numba threads"),
])
def test_bad_combinations_name_the_flag(kw, expect):
    with pytest.raises(ValueError) as exc:
        TrainConfig(**kw).validate()
    assert expect in str(exc.value)


def test_bad_combination_exits_2_on_every_rank(problems):
    res = run_mpi(2, ["-m", "mpidml.train", "--data", problems["dense"]["train"], "--algo", "feature_parallel",
                      "--model", "mlp"], timeout=60)
    assert res.returncode == 2 and "needs --model logreg" in res.stderr, res.output
