"""Data loading under real mpiexec at p = 1, 2, 3, 4: the union of the ranks' rows is
exactly the data set (dense and CSR, one file and shard files, contiguous and
per-epoch shuffled, and streamed out-of-core), and -1/+1 labels are detected over all ranks."""

import json
import os

import pytest

from mpirun import HERE, run_mpi


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_union_of_rank_rows_is_the_data_set(p, tmp_path):
    res = run_mpi(p, [os.path.join(HERE, "mpi_progs", "data_cases.py"), str(tmp_path)], timeout=120)
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["size"] == p
    cases = report["results"]
    assert len(cases) == 5 * 6 + 1
    bad = [c for c in cases if not c["ok"]]
    assert not bad, bad
    # said once, by rank 0
    assert sum("binary labels are -1/+1; mapped to 0/1" in m for m in report["messages"]) == 1
    warned = [m for m in report["messages"] if m.startswith("warning:")]
    assert len(warned) == (1 if p > 2 else 0), report["messages"]
    if p > 2:
        assert f"{p} ranks but" in warned[0] and "only 2 rows" in warned[0]
