"""End to end under mpiexec: ``--partition shuffle|sample`` train to the full-batch optimum
at p = 2, 3 (rows re-read from the file every epoch), with identical replicas; bad
combinations refused on every rank."""

import json

import numpy as np
import pytest

from mpirun import run_mpi
from reference import binary_problem

L2 = 1e-4
ARGS = ["--batch-size", "256", "--epochs", "5", "--l2", str(L2), "-q"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return binary_problem(tmp_path_factory.mktemp("data"), 20_000, 5_000, 20, seed=5, l2=L2)


@pytest.mark.parametrize("p,partition", [(2, "shuffle"), (3, "shuffle"), (2, "sample"), (3, "sample")])
def test_partition_converges(dataset, tmp_path, p, partition):
    metrics = str(tmp_path / f"{partition}-p{p}.jsonl")
    res = run_mpi(p, ["-m", "mpidml.train", "--data", dataset["train"], "--test", dataset["test"],
                      "--partition", partition, "--metrics", metrics, *ARGS], timeout=120)
    assert res.returncode == 0, res.output
    with open(metrics) as fh:
        records = [json.loads(line) for line in fh]
    header, summary = records[0], records[-1]
    assert header["config"]["partition"] == partition
    f0, f, f_star = summary["objective_initial"], summary["objective"], dataset["f_star"]
    assert abs(f0 - np.log(2)) < 1e-6
    # within 1 % (shuffle) / 2 % (sampling with replacement) of the way to the optimum
    assert f - f_star <= (0.01 if partition == "shuffle" else 0.02) * (f0 - f_star), (f, f_star, f0)
    assert abs(summary["test_accuracy"] - dataset["acc_star"]) <= 0.01
    assert summary["params_identical"] is True


def test_partition_flag_checks(dataset):
    res = run_mpi(2, ["-m", "mpidml.train", "--data", dataset["train"], "--partition", "shuffle",
                      "--memory-budget", "256M", "-q"], timeout=60)
    assert res.returncode == 2 and res.stderr.count("cannot be combined with --memory-budget") == 1, res.output
    res = run_mpi(1, ["-m", "mpidml.train", "--data", dataset["train"], "--partition", "random"], timeout=60)
    assert res.returncode == 2 and "invalid choice: 'random'" in res.stderr, res.output
