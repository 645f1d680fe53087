"""The collective microbenchmark: parsing (pure) and a real run under mpiexec."""

import json

import pytest

from mpirun import run_mpi

from mpidml.bench import bus_factor, parse_size, size_range


def test_sizes():
    assert parse_size("4") == 4 and parse_size("64K") == 65536 and parse_size("16M") == 16 << 20
    assert size_range("4:64", 4) == [4, 16, 64]
    assert size_range("1K", 2) == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert bus_factor("allreduce", 4) == 1.5 and bus_factor("allgather", 4) == 0.75


@pytest.mark.parametrize("p", [2, 3])
def test_bench_allreduce_validates_every_impl(p, tmp_path):
    out = tmp_path / "b.json"
    res = run_mpi(p, ["-m", "mpidml.bench", "allreduce", "-m", "4:256K", "-f", "16", "-i", "3",
                      "-x", "1", "-r", "2", "--impl", "auto,native,ring,rd,shm,hier", "--json", str(out),
                      "--fit"], timeout=180)
    assert res.returncode == 0, res.output
    doc = json.loads(out.read_text())
    recs = doc["records"]
    assert {r["impl"] for r in recs} == {"auto", "native", "ring", "rd", "shm", "hier", "membound"}
    assert all(r["wrong"] == 0 and r["time_us"] > 0 for r in recs)
    assert {r["size"] for r in recs} == {4, 64, 1024, 16384, 262144}
    assert "size(B)" in res.stdout and "busbw" in res.stdout and "PROJECTION" in res.stdout


def test_bench_inplace_and_other_collectives():
    for coll, extra in (("allreduce", ["--inplace", "--impl", "auto,native,shm"]),
                        ("reduce_scatter", []), ("allgather", []), ("bcast", [])):
        res = run_mpi(3, ["-m", "mpidml.bench", coll, "-m", "4:64K", "-f", "64", "-i", "2", "-x", "1",
                          "-r", "1", *extra], timeout=120)
        assert res.returncode == 0, res.output
        rows = [l for l in res.stdout.splitlines() if l.strip() and not l.startswith("#")]
        assert rows and all(l.split()[10] == "0" for l in rows), res.stdout  # #wrong column


def test_bench_rejects_unknown_impl():
    res = run_mpi(1, ["-m", "mpidml.bench", "allgather", "--impl", "shm"], timeout=60)
    assert res.returncode == 2 and "no implementation" in res.stderr


def test_bench_overlap_reports_all_phases(tmp_path):
    out = tmp_path / "o.json"
    res = run_mpi(2, ["-m", "mpidml.bench", "overlap", "-m", "64K:64K", "-r", "1", "--json", str(out)],
                  timeout=120)
    assert res.returncode == 0, res.output
    rec = json.loads(out.read_text())["records"][0]
    assert rec["compute_us"] > 0 and rec["comm_us"] > 0 and rec["both_us"] > 0
    assert "overlap" in res.stdout
