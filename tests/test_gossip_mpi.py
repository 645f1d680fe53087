"""Gossip exchange, shift exchange and compressed allgather sums under mpiexec."""

import json
import os

import pytest

from mpirun import HERE, run_mpi


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_gossip_and_codecs(p):
    res = run_mpi(p, [os.path.join(HERE, "mpi_progs", "gossip_codecs.py")], timeout=120)
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    bad = [c for c in report["results"] if not c["ok"]]
    assert not bad, bad
    cases = {c["case"] for c in report["results"]}
    assert {"gossip_ring", "codec_topk", "codec_qsgd", "codec_fp16"} <= cases
    assert {f"bcast_{i}_0_300001" for i in ("native", "tree", "chain", "shm")} <= cases


@pytest.mark.parametrize("p", [1, 2, 3])
def test_nonblocking_and_fusion(p):
    res = run_mpi(p, [os.path.join(HERE, "mpi_progs", "nonblocking.py")], timeout=120)
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    bad = [c for c in report["results"] if not c["ok"]]
    assert not bad and len(report["results"]) == 9, report
