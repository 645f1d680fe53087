"""Collectives (comm/collectives.py) under mpiexec at p = 1..4, and sync training that
keeps replicas bit-identical whichever algorithm auto picks (small and large buffers)."""

import json
import os

import pytest

from mpidml.data.synth import make_binary_dense

from mpirun import HERE, run_case_report, run_mpi

PROG = os.path.join(HERE, "mpi_progs", "collectives_cases.py")


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_collectives_cases(p):
    names = run_case_report(PROG, p, timeout=300)
    # the sizes straddle both thresholds for both dtypes, and the isolation cases ran
    assert {"float32_65536B_auto_sum", "float32_65540B_auto_sum", "float64_1032B_auto_sum_small1K",
            "native_mpi_allreduce_bit_identical_on_every_rank", "instance_a_counts_and_checks_alone",
            "module_api_counts_in_defaults_only"} <= set(names)
    assert len(names) > 150


@pytest.fixture(scope="module")
def d100(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("colldata") / "train.h5")
    make_binary_dense(path, 3000, 100, seed=5)
    return path


def _train(p, data, metrics, *extra, env=None):
    res = run_mpi(p, ["-m", "mpidml.train", "--data", data, "--epochs", "2", "--batch-size", "128",
                      "--metrics", str(metrics), "-q", *extra], timeout=240, env=env)
    assert res.returncode == 0, res.output
    return [json.loads(line) for line in open(metrics)][-1]


@pytest.mark.parametrize("model,impl", [(("--model", "logreg"), "native"),            # 101 x float32 + control
                                        (("--model", "mlp", "--hidden", "256"), "shm")])  # 26 113 params: 104 KB
def test_sync_training_replicas_identical_at_p3(d100, tmp_path, model, impl):
    auto = _train(3, d100, tmp_path / "auto.jsonl", *model)
    assert auto["params_identical"] is True
    assert impl in auto["allreduce_calls"] and "ring" not in auto["allreduce_calls"], auto["allreduce_calls"]
    ring = _train(3, d100, tmp_path / "ring.jsonl", *model, env={"MPIDML_ALLREDUCE_IMPL": "ring"})
    assert ring["params_identical"] is True and set(ring["allreduce_calls"]) == {"ring"}
    # another summation order: the same run up to rounding
    assert abs(auto["objective"] - ring["objective"]) < 1e-4 * max(1.0, abs(ring["objective"]))
    # both count about 2(p-1)/p n per step (segment rounding differs between algorithms)
    assert abs(auto["bytes_communicated"] - ring["bytes_communicated"]) <= 1e-3 * ring["bytes_communicated"]
