"""End-to-end: ``mpiexec -n K python -m mpidml.train`` as a subprocess, with timeouts."""

import json
import os
import signal
import sys
import time

import h5py
import numpy as np
import pytest

from mpidml.data.synth import make_binary_dense

from mpirun import HERE, finish, kill_group, mpiexec_path, rank_pids, run, run_mpi, scaled, spawn
from reference import binary_problem

L2 = 1e-4
TRAIN_ARGS = ["--batch-size", "256", "--epochs", "5", "--l2", str(L2), "-q"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A 20000 x 20 train set, a 5000-row test set, and the full-batch reference optimum."""
    return binary_problem(tmp_path_factory.mktemp("data"), 20_000, 5_000, 20, seed=5, l2=L2)


def read_metrics(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def train_run(p, dataset, tmp_path, *extra):
    metrics = str(tmp_path / f"metrics-p{p}.jsonl")
    res = run_mpi(p, ["-m", "mpidml.train", "--data", dataset["train"], "--test", dataset["test"],
                      "--metrics", metrics, *TRAIN_ARGS, *extra], timeout=120)
    assert res.returncode == 0, res.output
    return res, read_metrics(metrics)


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return {p: train_run(p, dataset, tmp) for p in (1, 2, 3)}


@pytest.mark.parametrize("p", [1, 2, 3])
def test_converges_to_reference(runs, dataset, p):
    res, records = runs[p]
    header, epochs, summary = records[0], records[1:-1], records[-1]
    assert header["type"] == "header" and header["world_size"] == p
    assert summary["type"] == "summary" and summary["world_size"] == p
    assert len(epochs) == 5
    f0, f, f_star = summary["objective_initial"], summary["objective"], dataset["f_star"]
    assert abs(f0 - np.log(2)) < 1e-6  # zero parameters
    assert f - f_star <= 0.01 * (f0 - f_star), (f, f_star, f0)
    assert abs(summary["test_accuracy"] - dataset["acc_star"]) <= 0.005
    assert summary["params_identical"] is True
    # what rank 0 printed is what the metrics file says
    assert f"{f:.6f}" in res.stdout and "replicas identical: yes" in res.stdout


def test_same_result_at_p2_and_p3(runs):
    s2, s3 = runs[2][1][-1], runs[3][1][-1]
    assert abs(s2["objective"] - s3["objective"]) < 1e-3
    assert abs(s2["test_accuracy"] - s3["test_accuracy"]) <= 0.005


def test_eval_every_skips_evaluation_but_not_training(runs, dataset, tmp_path):
    """--eval-every 2 of 5 epochs evaluates after epochs 2, 4 and 5 only; training (and so the
    final model) is bit for bit the run that evaluated every epoch; plot and sweep cope."""
    _, records = train_run(2, dataset, tmp_path, "--eval-every", "2")
    epochs, summary = records[1:-1], records[-1]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert [e["objective"] is not None for e in epochs] == [False, True, False, True, True]
    assert epochs[0]["test_accuracy"] is None and epochs[0]["bytes_communicated"] > 0
    full = runs[2][1]
    assert summary["objective"] == full[-1]["objective"] and summary["params_digest"] == full[-1]["params_digest"]
    assert [e["objective"] for e in epochs if e["objective"] is not None] == \
        [full[i]["objective"] for i in (2, 4, 5)]
    from mpidml.plot import plot_runs, read_run
    plot_runs([dict(read_run(str(tmp_path / "metrics-p2.jsonl")), label="e2")], str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 0
    bad = run_mpi(1, ["-m", "mpidml.train", "--data", dataset["train"], "--eval-every", "-1"], timeout=60)
    assert bad.returncode == 2 and "--eval-every must be >= 0" in bad.stderr, bad.output


def test_full_batch_gradient_is_exact_for_uneven_and_empty_shards(tmp_path):
    """Full-batch GD must not depend on p: 7 rows over 1..4 ranks (uneven shards) and
    3 rows over 4 ranks (one rank has no rows, weight 0) give the same objective."""
    for n in (7, 3):
        path = str(tmp_path / f"tiny{n}.h5")
        make_binary_dense(path, n, 4, seed=n, dtype=np.float64)
        objectives = {}
        for p in (1, 2, 3, 4):
            metrics = str(tmp_path / f"tiny{n}-p{p}.jsonl")
            res = run_mpi(p, ["-m", "mpidml.train", "--data", path, "--batch-size", str(n),
                              "--epochs", "30", "--lr", "0.5", "--momentum", "0",
                              "--lr-schedule", "constant", "--metrics", metrics, "-q"], timeout=60)
            assert res.returncode == 0, res.output
            objectives[p] = read_metrics(metrics)[-1]["objective"]
        ref = objectives[1]
        assert ref < np.log(2) - 1e-3  # it trained
        for f in objectives.values():
            assert abs(f - ref) < 1e-12, (n, objectives)


def test_fault_on_one_rank_aborts_job_naming_rank(dataset):
    res = run_mpi(3, ["-m", "mpidml.train", "--data", dataset["train"], "--epochs", "3",
                      "--inject-fault", "raise:1:10", "-q"], timeout=60)
    assert res.returncode != 0
    assert res.seconds < 30, res.seconds
    assert "rank 1 of 3 failed" in res.stderr and "injected fault at step 10" in res.stderr


def test_missing_file_fails_together_once(tmp_path):
    missing = str(tmp_path / "nope.h5")
    res = run_mpi(3, ["-m", "mpidml.train", "--data", missing], timeout=60)
    assert res.returncode == 2, res.output
    assert "ranks 0-2: " in res.stderr and res.stderr.count("no such file") == 1
    assert res.stderr.count("mpidml: error") == 1 and missing in res.stderr


def test_nan_in_one_shard_names_rank_file_and_row(tmp_path):
    path = str(tmp_path / "nan.h5")
    make_binary_dense(path, 30, 3, seed=1)
    with h5py.File(path, "r+") as f:
        f["X"][25, 1] = np.nan  # rows 20..29 belong to rank 2 of 3
    res = run_mpi(3, ["-m", "mpidml.train", "--data", path], timeout=60)
    assert res.returncode == 2, res.output
    assert "rank 2:" in res.stderr and "NaN or inf in row 25" in res.stderr and path in res.stderr


def test_schema_errors_are_clear(tmp_path):
    path = str(tmp_path / "bad.h5")
    with h5py.File(path, "w") as f:
        f["X"] = np.zeros((10, 2), np.float32)
        f["y"] = np.zeros(9, np.float32)
    res = run_mpi(2, ["-m", "mpidml.train", "--data", path], timeout=60)
    assert res.returncode == 2 and "/X has 10 rows but /y has 9" in res.stderr, res.output
    res = run_mpi(1, ["-m", "mpidml.train", "--epochs", "0"], timeout=60)
    assert res.returncode == 2 and "--epochs must be >= 1" in res.stderr, res.output


def test_default_run_8_ranks_oversubscribed(tmp_path):
    """The README's main job: `mpirun -n 8 python -m mpidml.train`, no arguments."""
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    cache = tmp_path / "cache"
    res = run([mpirun, "-n", "8", sys.executable, "-m", "mpidml.train"], timeout=180,
              env={"MPIDML_CACHE_DIR": str(cache)})
    assert res.returncode == 0, res.output
    assert "8 rank(s)" in res.stdout and "replicas identical: yes" in res.stdout
    assert res.stdout.count("epoch") >= 6
    files = sorted(os.listdir(cache))
    assert len(files) == 2 and all(f.endswith(".h5") for f in files), files  # no temp files left
    # a second run reuses the cache (does not regenerate)
    res2 = run_mpi(2, ["-m", "mpidml.train", "--epochs", "1", "-q"], timeout=120,
                   env={"MPIDML_CACHE_DIR": str(cache)})
    assert res2.returncode == 0 and "generated" not in res2.stdout, res2.output


def test_concurrent_runs_share_the_cache_safely(tmp_path):
    cmd = [sys.executable, "-m", "mpidml.train", "--epochs", "1", "-q"]
    procs = [spawn(cmd, env={"MPIDML_CACHE_DIR": str(tmp_path)}) for _ in range(2)]
    try:
        for proc in procs:
            out, err = finish(proc, 120)
            assert proc.returncode == 0, out + err
    finally:
        for proc in procs:
            kill_group(proc)
    assert sorted(f for f in os.listdir(tmp_path) if not f.endswith(".h5")) == []


def test_help_documents_every_flag():
    res = run([sys.executable, "-m", "mpidml.train", "--help"], timeout=60)
    assert res.returncode == 0
    for flag in ("--data", "--test", "--epochs", "--batch-size", "--lr", "--seed", "--cache-dir",
                 "--momentum", "--l2", "--metrics", "--inject-fault", "Exit status"):
        assert flag in res.stdout, flag
    res = run([sys.executable, "-m", "mpidml", "--version"], timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("mpidml ")


def test_example_spmd_program(tmp_path):
    path = str(tmp_path / "ex.h5")
    make_binary_dense(path, 3000, 6, seed=2)
    res = run_mpi(3, [os.path.join(HERE, "..", "examples", "spmd_logreg.py"), path], timeout=60)
    assert res.returncode == 0, res.output
    assert "replicas identical: True" in res.stdout
    losses = [float(l.split()[-1]) for l in res.stdout.splitlines() if l.startswith("epoch")]
    assert len(losses) == 3 and losses[-1] < 0.6


def test_kill_9_of_one_rank_ends_the_job(dataset, tmp_path):
    """kill -9 of one rank mid-run: the launcher ends the whole job, nonzero, in < 30 s."""
    marker = str(tmp_path / "kill9-marker")   # unique argument to find this job's ranks
    cmd = [mpiexec_path(), "-n", "3", sys.executable, "-m", "mpidml.train", "--data", dataset["train"],
           "--epochs", "100000", "--cache-dir", marker, "-q"]
    proc = spawn(cmd)
    def job_ranks():
        return rank_pids(proc, marker)

    try:
        ranks = []
        deadline = time.monotonic() + scaled(60)
        while len(ranks) < 3 and time.monotonic() < deadline:
            ranks = job_ranks()
            time.sleep(0.2)
        assert len(ranks) >= 3, "ranks did not start"
        time.sleep(3)                      # mid-training
        for _ in range(5):   # a PID seen while the launcher forked may be gone: look again
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"the job ended (exit {proc.returncode}) before a rank was killed:\n{err[-3000:]}")
            try:
                os.kill(job_ranks()[-1], signal.SIGKILL)
                break
            except (ProcessLookupError, IndexError):
                time.sleep(0.2)
        else:
            pytest.fail("no rank of the running job could be killed")
        t0 = time.monotonic()
        finish(proc, 30, "the job after kill -9 of one rank")
        assert proc.returncode != 0 and time.monotonic() - t0 < 30   # the property: not scaled
    finally:
        kill_group(proc)
