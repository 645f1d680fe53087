"""Every bad input under real mpiexec: all ranks fail together (exit 2, one message from
rank 0 naming file and dataset), never a hang; more ranks than rows is only a warning."""

import os
import shutil
import stat
import sys

import numpy as np
import pytest
from test_data_loading import BAD_CASE_NAMES, bad_inputs

from mpidml.data.writer import write_dense

from mpirun import mpiexec_path, run, run_mpi


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return bad_inputs(str(tmp_path_factory.mktemp("bad")))


def check_cmd(spec, labels="binary"):
    return ["-m", "mpidml.data", "check", spec, "--labels", labels]


@pytest.mark.parametrize("case", BAD_CASE_NAMES)
def test_bad_input_fails_all_ranks_together(cases, case):
    _, spec, labels, text = next(c for c in cases if c[0] == case)
    p = 3 if case in ("nan_in_x", "binary_labels_mix_0_and_minus1") else 2
    res = run_mpi(p, check_cmd(spec, labels), timeout=60)
    assert res.returncode == 2, res.output
    assert text in res.stderr, res.output
    assert res.stderr.count("mpidml: error:") == 1, res.output  # printed once, by rank 0
    assert "Traceback" not in res.stderr


def test_nan_names_the_rank_that_found_it(cases):
    _, spec, _, _ = next(c for c in cases if c[0] == "nan_in_x")
    res = run_mpi(3, check_cmd(spec), timeout=60)  # row 8 of 10 is rank 2's
    assert res.returncode == 2 and "failed on 1 rank(s)" in res.stderr and "rank 2: " in res.stderr


def test_unreadable_file_fails_together(tmp_path):
    """As root, drop the capabilities that let root read any file regardless of its mode."""
    path = str(tmp_path / "secret.h5")
    write_dense(path, np.ones((4, 2), np.float32), np.zeros(4, np.float32))
    os.chmod(path, 0)
    try:
        cmd = [mpiexec_path(), "-n", "2", sys.executable, *check_cmd(path)]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv")
            cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
        res = run(cmd, timeout=60)
        assert res.returncode == 2, res.output
        assert f"{path}: permission denied (file not readable)" in res.stderr, res.output
        assert "ranks 0-1: " in res.stderr and res.stderr.count("mpidml: error:") == 1
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_more_ranks_than_rows_is_a_warning(tmp_path):
    path = str(tmp_path / "two.h5")
    write_dense(path, np.ones((2, 3), np.float32), np.array([0, 1], np.float32))
    res = run_mpi(4, check_cmd(path), timeout=60)
    assert res.returncode == 0, res.output
    assert "warning: 4 ranks but" in res.stdout and "only 2 rows: 2 rank(s) hold no rows" in res.stdout
    assert "rows per rank [1, 1, 0, 0]" in res.stdout and res.stdout.count("warning") == 1


def test_train_on_shard_directory_with_pm1_labels_and_csr(tmp_path):
    """Through the training CLI: a directory of -1/+1 shard files trains (mapping said once);
    a CSR (click-log) data set trains through the sparse kernels."""
    from mpidml.data.synth import binary_dense_blocks, clicklog_csr_blocks, write_blocks

    blocks = ((X, 2 * y - 1) for X, y in binary_dense_blocks(900, 4, seed=2))
    write_blocks(str(tmp_path / "pm1"), blocks, 900, 4, np.float32, np.float32, shards=3)
    res = run_mpi(2, ["-m", "mpidml.train", "--data", str(tmp_path / "pm1"), "--epochs", "2", "-q"], timeout=90)
    assert res.returncode == 0, res.output
    assert res.stdout.count("binary labels are -1/+1; mapped to 0/1") == 1
    assert "(900 x 4 float32)" in res.stdout and "replicas identical: yes" in res.stdout
    write_blocks(str(tmp_path / "ck.h5"), clicklog_csr_blocks(2000, 1000, 5, seed=1), 2000, 1000,
                 np.float32, np.float32, sparse=True)
    metrics = tmp_path / "ck.jsonl"
    res = run_mpi(3, ["-m", "mpidml.train", "--data", str(tmp_path / "ck.h5"), "--epochs", "3",
                      "--batch-size", "128", "--metrics", str(metrics), "-q"], timeout=90)
    assert res.returncode == 0 and "replicas identical: yes" in res.stdout, res.output
    import json
    summary = [json.loads(line) for line in open(metrics)][-1]
    assert summary["objective"] < summary["objective_initial"] - 0.01
