"""Ring reduce-scatter / allgather / allreduce under real mpiexec at p = 1, 2, 3, 4."""

import json
import os

import pytest

from mpirun import HERE, run_mpi


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_ring_collectives(p):
    res = run_mpi(p, [os.path.join(HERE, "mpi_progs", "ring_cases.py")], timeout=180)
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["size"] == p
    cases = report["results"]
    # per length: 4 cases for float32 and float64 (sum, avg, reduce-scatter, allgather),
    # 3 for int64 (no avg); plus the rejected 2-D buffer
    assert len(cases) == 11 * len(report["lengths"]) + 1
    bad = [c for c in cases if not (c["ok"] and c["identical"])]
    assert not bad, bad
    assert {c["n"] for c in cases} >= {0, 1, p + 1, 1_000_003}
