"""Parameter server (``--algo ps``): the SSP clock rule without MPI, and end to end under
mpiexec — BSP equals sync, the staleness bound holds with a straggler, ASGD / DC-ASGD
converge, epoch-end checkpoints resume bit for bit and elastically, failures stop all."""

import json
import math
import random

import numpy as np
import pytest

from mpidml.algos.ps import SSPClocks, parse_staleness
from mpidml.data.layout import CSRMatrix
from mpidml.data.synth import clicklog_csr_blocks, make_binary_dense, multiclass_dense_blocks, write_blocks
from mpidml.kernels._common import touched_columns
from mpidml.models import make_model

from mpirun import run_mpi


def test_parse_staleness():
    assert parse_staleness("0") == 0 and parse_staleness(3) == 3 and parse_staleness("inf") == math.inf
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(ValueError, match="--staleness"):
            parse_staleness(bad)


@pytest.mark.parametrize("bound", [0, 1, 3, math.inf])
def test_ssp_clocks_never_release_beyond_the_bound_and_never_deadlock(bound):
    """Simulate a server with W workers of random speeds (one 10x slower): a worker pushes,
    waits until released, pushes again. Every release obeys c - slowest <= bound, and
    every worker gets through all its clocks (no deadlock), including with retirements."""
    rng = random.Random(7)
    W, clocks_each = 4, 40
    for trial in range(20):
        clocks = SSPClocks(W, bound)
        speed = [1.0] * W
        speed[trial % W] = 10.0                       # the straggler
        t_ready = [rng.random() * speed[w] for w in range(W)]   # when each worker next pushes
        pending, done, max_gap = {}, set(), 0
        ends = {w: clocks_each - (w == 1) * 5 for w in range(W)}   # worker 1 retires early
        now = 0.0
        while len(done) < W:
            movable = [w for w in range(W) if w not in pending and w not in done]
            assert movable or pending, "deadlock"
            if movable:
                w = min(movable, key=lambda v: t_ready[v])
                now = max(now, t_ready[w])
                clocks.pushed(w, clocks.clock[w] + 1)
                pending[w] = clocks.clock[w]
            for v in sorted(pending):
                c = pending[v]
                if clocks.ready(c):
                    max_gap = max(max_gap, clocks.gap(c))
                    assert c - clocks.slowest() <= bound
                    del pending[v]
                    if c >= ends[v]:
                        clocks.retire(v)
                        done.add(v)
                    else:
                        t_ready[v] = now + rng.random() * speed[v]
            if not movable and pending:   # only held-back workers: the slowest must be free
                assert any(clocks.ready(c) for c in pending.values()), "deadlock"
        if bound != math.inf:
            assert max_gap <= bound
    with pytest.raises(RuntimeError, match="pushed clock 3 after clock 1"):
        c = SSPClocks(2, 1)
        c.pushed(0, 1)
        c.pushed(0, 3)


@pytest.mark.parametrize("name", ["logreg", "lsq", "softmax", "mlp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_pull_covers_every_parameter_the_batch_reads(name, dtype):
    """What makes the sparse push/pull exact: a CSR batch's data gradient is zero outside
    params_of_columns(touched columns), and the loss does not depend on the other parameters."""
    rng = np.random.default_rng(3)
    n, d = 200, 300
    dense = np.where(rng.random((n, d)) < 0.02, rng.standard_normal((n, d)), 0).astype(dtype)
    rows_of = [np.flatnonzero(r) for r in dense]
    X = CSRMatrix(np.concatenate([r[i] for r, i in zip(dense, rows_of)]).astype(dtype),
                  np.concatenate(rows_of).astype(np.int32),
                  np.concatenate([[0], np.cumsum([len(i) for i in rows_of])]).astype(np.int64), (n, d))
    classes = name in ("softmax", "mlp")
    y = rng.integers(0, 3 if classes else 2, n).astype(np.int64 if classes else dtype)
    model = make_model(name, d, 3, dtype, 1e-3, hidden=(5,))
    rows = rng.choice(n, 17, replace=False).astype(np.int64)
    mark, out = np.zeros(d, np.uint8), np.empty(d, np.int64)
    k = touched_columns(X.indptr, X.indices, rows[:9], mark, out, 0)
    k = touched_columns(X.indptr, X.indices, rows[9:], mark, out, k)   # two pieces of one batch
    cols = np.sort(out[:k])
    assert np.array_equal(cols, np.flatnonzero(dense[rows].any(axis=0))) and mark.sum() == k
    idx = model.params_of_columns(cols)
    if name == "mlp":
        assert idx is None
        return
    params = (rng.standard_normal(model.nparams) * 0.1).astype(dtype)
    grad = np.zeros_like(params)
    loss = model.loss_grad_sum(X, y, rows, params, grad)
    outside = np.setdiff1d(np.arange(model.nparams), idx)
    assert not grad[outside].any() and grad[idx].any()
    moved = params.copy()
    moved[outside] += 1.0                              # stale values outside: same loss and gradient
    grad2 = np.zeros_like(params)
    assert model.loss_grad_sum(X, y, rows, moved, grad2) == loss and np.array_equal(grad2, grad)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("psdata")
    paths = {"train": str(d / "train.h5"), "test": str(d / "test.h5"), "mc": str(d / "mc.h5"),
             "csr": str(d / "csr.h5")}
    write_blocks(paths["csr"], clicklog_csr_blocks(8000, d=1 << 14, seed=4), 8000, 1 << 14, np.float32, np.float32,
                 sparse=True)
    make_binary_dense(paths["train"], 6000, 12, seed=3)
    make_binary_dense(paths["test"], 1000, 12, seed=3, stream=1)
    write_blocks(paths["mc"], multiclass_dense_blocks(3000, 10, 4, seed=5), 3000, 10, np.float32, np.int64)
    return paths


def train(p, data, *extra, metrics=None, timeout=120, file="train"):
    args = ["-m", "mpidml.train", "--data", data[file], "--epochs", "3", "--batch-size", "256", "-q", *extra]
    if file == "train":
        args += ["--test", data["test"]]
    if metrics:
        args += ["--metrics", str(metrics)]
    return run_mpi(p, args, timeout=timeout)


def records(path):
    return [json.loads(line) for line in open(path)]


def objectives(path):
    return [r["objective"] for r in records(path) if r["type"] == "epoch"]


def test_bsp_equals_sync(data, tmp_path):
    """--staleness 0 with W workers = sync with W ranks, to rounding: momentum (logreg),
    Adam, and an MLP whose L2 weight blocks straddle the server shards (K = 3)."""
    cases = [("csr", [], "csr"),     # sparse push/pull of the touched columns only
             ("logreg", [], "train"),
             ("adam", ["--optimizer", "adam", "--lr", "0.05"], "train"),
             ("mlp", ["--model", "mlp", "--hidden", "16", "--lr", "0.2", "--l2", "0.001"], "mc")]
    for name, extra, file in cases:
        ref = train(2, data, *extra, metrics=tmp_path / f"{name}-sync.jsonl", file=file)
        assert ref.returncode == 0, ref.output
        layouts = [(3, 1), (4, 2)] if name != "mlp" else [(5, 3)]
        for p, k in layouts:
            res = train(p, data, "--algo", "ps", "--servers", str(k), "--staleness", "0", *extra,
                        metrics=tmp_path / f"{name}-ps{p}.jsonl", file=file)
            assert res.returncode == 0, res.output
            np.testing.assert_allclose(objectives(tmp_path / f"{name}-ps{p}.jsonl"),
                                       objectives(tmp_path / f"{name}-sync.jsonl"), rtol=2e-6, err_msg=name)
            summary = records(tmp_path / f"{name}-ps{p}.jsonl")[-1]
            assert summary["clock_gap_max"] == 0 and summary["params_identical"]
            assert (summary["pull_fraction"] < 0.5) if name == "csr" else (summary["pull_fraction"] == 1.0)
            assert summary["staleness_histogram"][1:] == [] or not any(summary["staleness_histogram"][1:])


def test_ssp_bound_holds_with_a_straggler_and_async_variants_converge(data, tmp_path):
    ref = train(3, data, metrics=tmp_path / "sync.jsonl")
    assert ref.returncode == 0, ref.output
    f_sync = records(tmp_path / "sync.jsonl")[-1]["objective"]
    for name, extra in [("ssp1", ["--staleness", "1"]), ("ssp4", ["--staleness", "4"]),
                        ("asgd", ["--staleness", "inf"]), ("dc", ["--staleness", "inf", "--dc-lambda", "0.5"]),
                        ("asgd_shuffle", ["--partition", "shuffle"])]:
        res = train(4, data, "--algo", "ps", *extra, "--inject-fault", "slow:0:0.004",
                    metrics=tmp_path / f"{name}.jsonl")
        assert res.returncode == 0, res.output
        s = records(tmp_path / f"{name}.jsonl")[-1]
        assert s["objective"] < f_sync + 0.01, (name, s["objective"], f_sync)
        if name.startswith("ssp"):
            bound = int(name[3:])
            assert s["clock_gap_max"] <= bound, s["clock_gap_histogram"]
            assert s["clock_gap_max"] == bound, s["clock_gap_histogram"]   # the straggler holds the others back
        else:
            assert s["clock_gap_max"] > 4, s["clock_gap_histogram"]      # nobody waits for rank 0
        assert sum(s["staleness_histogram"]) > 0


def test_epoch_end_checkpoints_resume_bit_for_bit_and_elastic(data, tmp_path):
    common = ["--algo", "ps", "--staleness", "0", "--epochs", "4", "--checkpoint-every", "1"]
    ck = str(tmp_path / "ck")
    ref = train(3, data, *common, "--checkpoint-dir", str(tmp_path / "ref"), metrics=tmp_path / "ref.jsonl")
    assert ref.returncode == 0, ref.output
    crash = train(3, data, *common, "--checkpoint-dir", ck, "--inject-fault", "raise:1:60")
    assert crash.returncode != 0 and "rank 1" in crash.stderr
    res = train(3, data, *common, "--checkpoint-dir", ck, "--resume", metrics=tmp_path / "res.jsonl")
    assert res.returncode == 0, res.output
    a, b = records(tmp_path / "ref.jsonl")[-1], records(tmp_path / "res.jsonl")[-1]
    assert b["resumed_from_step"] == 48 and b["params_digest"] == a["params_digest"]
    # elastic: the same checkpoint continued by 2 workers + 2 servers (momentum assembled and re-sharded)
    el = train(4, data, *common, "--servers", "2", "--checkpoint-dir", ck, "--resume", metrics=tmp_path / "el.jsonl")
    assert el.returncode == 0 and "re-partitioned" in el.stdout, el.output
    assert abs(records(tmp_path / "el.jsonl")[-1]["objective"] - a["objective"]) < 2e-3


def test_nan_and_bad_flags_stop_every_rank(data, tmp_path):
    res = train(3, data, "--algo", "ps", "--inject-fault", "nan:1:5", timeout=60)
    assert res.returncode == 4, res.output
    assert "rank 1: loss or gradient is NaN/inf at step" in res.stderr
    for extra, text in [(["--servers", "3"], "--servers < the number of ranks (3)"),
                        (["--staleness", "-2"], "--staleness must be"),
                        (["--staleness", "soon"], "--staleness must be"),
                        (["--dc-lambda", "-1"], "--dc-lambda must be >= 0")]:
        bad = train(3, data, "--algo", "ps", *extra, timeout=60)
        assert bad.returncode == 2 and text in bad.stderr, (extra, bad.output)

