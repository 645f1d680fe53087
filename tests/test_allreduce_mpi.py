"""All allreduce algorithms at p = 1..5, and hierarchical on emulated uneven nodes."""

import json
import os

import pytest

from mpirun import HERE, run_mpi

PROG = os.path.join(HERE, "mpi_progs", "allreduce_impls.py")


def check(res, p, nodes):
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["size"] == p and report["nodes"] == nodes
    bad = [c for c in report["results"] if not (c["ok"] and c["identical"])]
    assert not bad, bad
    impls = {c["impl"] for c in report["results"]}
    assert {"ring", "rd", "native", "auto", "hier"} <= impls
    return report


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_all_impls_single_node(p):
    report = check(run_mpi(p, [PROG], timeout=240), p, 1)
    assert "shm" in {c["impl"] for c in report["results"]}


@pytest.mark.parametrize("p,fake", [(5, "3,2"), (4, "1,3"), (3, "1,1,1")])
def test_hierarchical_on_emulated_nodes(p, fake):
    check(run_mpi(p, [PROG], timeout=240, env={"MPIDML_FAKE_NODES": fake}), p, len(fake.split(",")))


def test_bad_fake_nodes_is_a_clear_error():
    res = run_mpi(2, [PROG], timeout=60, env={"MPIDML_FAKE_NODES": "3,1"})
    assert res.returncode != 0 and "sum to the 2 ranks" in res.stderr
