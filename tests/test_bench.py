"""The collective microbenchmark: parsing (pure) and a real run under mpiexec."""

import json

import numpy as np
import pytest

from mpidml.bench import bus_factor, parse_size, parse_table, size_range

from mpirun import run_mpi, scaled


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
    for coll, extra in (("allreduce", ["--place", "out", "--impl", "auto,native,shm"]),
                        ("reduce_scatter", []), ("allgather", []), ("bcast", [])):
        res = run_mpi(3, ["-m", "mpidml.bench", coll, "-m", "4:64K", "-f", "64", "-i", "2", "-x", "1",
                          "-r", "1", *extra], timeout=120)
        assert res.returncode == 0, res.output
        rows = [r for r in parse_table(res.stdout) if r["impl"] != "membound"]
        assert rows and all(r["#wrong"] == "0" for r in rows), res.stdout


def test_bench_rejects_unknown_impl():
    res = run_mpi(1, ["-m", "mpidml.bench", "allgather", "--impl", "shm"], timeout=60)
    assert res.returncode == 2 and "no implementation" in res.stderr


@pytest.mark.parametrize("argv,expect", [
    (["allreduce", "-m", "64K:4"], "MIN (65536 B) > MAX (4 B)"),
    (["allreduce", "-m", "0:4"], "MIN must be >= 1 byte"),
    (["allreduce", "-m", "4:12Q"], "bad size '12Q'"),
    (["allreduce", "-f", "1"], "--factor must be >= 2"),
    (["allreduce", "-i", "0"], "--iterations must be >= 1"),
    (["bcast", "-r", "0"], "--reps must be >= 1"),
    (["allreduce", "-x", "-1"], "--warmup must be >= 0"),
    (["reduce_scatter", "--impl", "native,rd"], "reduce_scatter has no implementation ['rd']"),
])
def test_bench_argument_errors_are_usage_errors(argv, expect, capsys):
    """Every argument error is found before MPI starts: argparse's exit 2 and one message."""
    from mpidml.bench import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert expect in err and "usage:" in err, err


def test_bench_usage_error_under_mpiexec_is_one_message():
    res = run_mpi(2, ["-m", "mpidml.bench", "allreduce", "-m", "64K:4"], timeout=60)
    assert res.returncode == 2, res.output
    assert res.stderr.count("error: bad size range") == 1, res.output     # rank 0 only
    assert "Traceback" not in res.output and "MPI_Abort" not in res.output and "abort" not in res.output.lower()


def test_bench_help_shows_no_default_for_flags():
    from mpidml.bench import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text
    assert "skip the memory-bound reference row (measured unless this is given)" in text
    assert "(default: 4:64M)" in text


@pytest.mark.parametrize("p,extra,corrupt,want", [
    # the first call of the 2nd repetition: a check of only the last call would miss it
    (2, ["--place", "out", "--impl", "native,ring"], "ring:1:0", {"ring": 1, "native": 0}),
    (3, ["--inplace", "--impl", "native,ring"], "native:0:2,native:2:0,ring:1:4", {"ring": 1, "native": 2}),
    # in place in the shared window: the damaged element is in the window buffer itself
    (2, ["--sendbuf", "window", "--place", "in", "--impl", "native,shm"], "shm:2:3", {"shm": 1, "native": 0}),
])
def test_bench_counts_a_corrupted_timed_call(p, extra, corrupt, want, tmp_path):
    """MPIDML_BENCH_CORRUPT damages one timed call's result on rank 0: #wrong counts it, the
    bench exits 1, and the other implementations stay at 0."""
    out = tmp_path / "c.json"
    res = run_mpi(p, ["-m", "mpidml.bench", "allreduce", "-m", "1K:1K", "-i", "5", "-x", "1", "-r", "3",
                      "--no-membound", "--json", str(out), *extra],
                  timeout=120, env={"MPIDML_BENCH_CORRUPT": corrupt})
    assert res.returncode == 1 and "some results were wrong" in res.stdout, res.output
    recs = json.loads(out.read_text())["records"]
    assert {r["impl"]: r["wrong"] for r in recs} == want, recs
    rows = {r["impl"]: r["#wrong"] for r in parse_table(res.stdout)}
    assert rows == {k: str(v) for k, v in want.items()}, res.stdout
    n_wrong = sum(want.values())
    assert f"(30 calls, configurations {recs[0]['config']}), " in res.stdout, res.stdout
    assert f": {n_wrong} wrong element(s); membound rows are not checked" in res.stdout


def test_bench_all_configurations_each_against_native_in_the_same_mode(tmp_path):
    """The default is what training does (private buffer, in place); --all-configs adds
    private out of place and the shared window in and out of place, each with its own
    native row (ratios within the configuration) and one membound row per size; the 64 KiB
    and 128 KiB rows around auto's switch are there."""
    out = tmp_path / "a.json"
    res = run_mpi(2, ["-m", "mpidml.bench", "allreduce", "-m", "4:128K", "-f", "2", "-i", "2", "-x", "0",
                      "-r", "1", "--impl", "auto,native,ring", "--json", str(out)], timeout=120)
    assert res.returncode == 0, res.output
    recs = json.loads(out.read_text())["records"]
    assert {(r["config"], r["sendbuf"], r["inplace"]) for r in recs if r["impl"] != "membound"} == \
        {("priv/in", "private", True)}
    assert {r["size"] for r in recs} >= {65536, 131072} and len({r["size"] for r in recs}) == 16
    res = run_mpi(2, ["-m", "mpidml.bench", "allreduce", "-m", "64K:128K", "-i", "2", "-x", "0", "-r", "1",
                      "--impl", "auto,native,ring", "--all-configs", "--json", str(out)], timeout=120)
    assert res.returncode == 0, res.output
    recs = json.loads(out.read_text())["records"]
    want = {"priv/in": {"auto", "native", "ring"}, "priv/out": {"auto", "native", "ring"},
            "win/in": {"auto", "native"}, "win/out": {"auto", "native"}, "-": {"membound"}}
    for size in (65536, 131072):
        got: dict = {}
        for r in recs:
            if r["size"] == size:
                got.setdefault(r["config"], set()).add(r["impl"])
        assert got == want, got
    by = {(r["size"], r["config"], r["impl"]): r for r in recs}
    for (size, config, impl), r in by.items():
        assert r["wrong"] == 0
        if impl not in ("native", "membound"):
            assert r["vs_native"] == pytest.approx(by[(size, config, "native")]["time_us"] / r["time_us"])
        if impl != "membound":
            assert r["sendbuf"] == ("window" if config.startswith("win") and impl == "auto" else "private")
            assert r["inplace"] == config.endswith("/in")
    assert by[(131072, "win/in", "auto")]["algo"] == "shm" and by[(65536, "priv/in", "auto")]["algo"] == "native"
    header = res.stdout.split("size(B)")[0]
    assert "called directly (no mpidml code)" in header and "op sum on every side" in header


def test_native_is_the_plain_mpi_call(monkeypatch):
    """The timed native callable is comm.Allreduce / comm.Bcast itself: no mpidml wrapper
    (select.allreduce, Collectives, native_allreduce) runs inside it."""
    from mpi4py import MPI

    import mpidml.comm.select as select
    from mpidml.bench import _Case

    class Comm:
        def __init__(self):
            self.calls = []

        def Get_size(self):
            return 2

        def Get_rank(self):
            return 0

        def Allreduce(self, *args, **kw):
            self.calls.append(("Allreduce", args, kw))

        def Bcast(self, *args, **kw):
            self.calls.append(("Bcast", args, kw))

    def forbidden(*a, **k):
        raise AssertionError("an mpidml wrapper ran inside the timed native call")

    for name in ("allreduce", "bcast", "native_allreduce"):
        monkeypatch.setattr(select, name, forbidden)
    comm = Comm()
    inplace = _Case(comm, "allreduce", 8, np.float32, "private", True)
    inplace.run("native")()
    outplace = _Case(comm, "allreduce", 8, np.float32, "private", False)
    outplace.run("native")()
    bc = _Case(comm, "bcast", 8, np.float32)
    bc.run("native")()
    (n1, a1, k1), (n2, a2, k2), (n3, a3, k3) = comm.calls
    assert n1 == "Allreduce" and a1[0] is MPI.IN_PLACE and a1[1] is inplace.out and not k1
    assert n2 == "Allreduce" and a2[0] is outplace.send and a2[1] is outplace.out and not k2
    assert n3 == "Bcast" and a3[0] is bc.out and k3 == {"root": 0}


def test_bench_overlap_reports_all_phases(tmp_path):
    out = tmp_path / "o.json"
    res = run_mpi(2, ["-m", "mpidml.bench", "overlap", "-m", "64K:64K", "-r", "1", "--json", str(out)],
                  timeout=120)
    assert res.returncode == 0, res.output
    rec = json.loads(out.read_text())["records"][0]
    assert rec["compute_us"] > 0 and rec["comm_us"] > 0 and rec["both_us"] > 0
    assert "overlap" in res.stdout


def _fake_run(path, accs, objective):
    recs = [{"type": "header"}] + [
        {"type": "epoch", "epoch": e, "test_accuracy": a, "objective": objective, "train_seconds": e * 1.0,
         "bytes_communicated": e * 10} for e, a in enumerate(accs, 1)]
    recs.append({"type": "summary", "objective": objective, "test_accuracy": accs[-1]})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def test_convergence_table_picks_each_variants_best_lr(tmp_path):
    """bench/convergence.py shows each variant at the lr of its grid that meets the target
    first; when none does, the one with the best final accuracy / objective."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))
    from convergence import best_run, task_flags

    ok = lambda e: e["test_accuracy"] >= 0.8  # noqa: E731
    grid = {0.05: _fake_run(tmp_path / "a", [0.5, 0.7, 0.81], 0.3),
            0.1: _fake_run(tmp_path / "b", [0.6, 0.82, 0.83], 0.4),
            0.2: _fake_run(tmp_path / "c", [0.7, 0.75, 0.79], 0.2)}
    lr, path, _, hit = best_run(grid, ok, "mlp")
    assert lr == 0.1 and hit["epoch"] == 2 and path == grid[0.1]
    miss = {lr: grid[lr] for lr in (0.05, 0.2)}
    ok_never = lambda e: False  # noqa: E731
    assert best_run(miss, ok_never, "mlp")[0] == 0.05        # best final accuracy
    assert best_run(miss, ok_never, "convex")[0] == 0.2      # lowest final objective
    flags = task_flags("mlp", epochs=3, lr=0.2)
    assert flags[flags.index("--epochs") + 1] == "3" and flags[-2:] == ["--lr", "0.2"]
    assert task_flags("convex")[-2:] == ["--lr", "4"]


def test_regenerate_script_dry_run_matches_the_manifest():
    """bench/regenerate.sh --dry-run prints one locked command per raw-file benchmark; every
    one runs an existing bench script and is the command bench/results/MANIFEST.md records;
    an unknown benchmark is refused."""
    import os
    import shlex
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "bench", "regenerate.sh")
    res = subprocess.run(["bash", script, "--dry-run"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHON": "python"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    manifest = open(os.path.join(root, "bench", "results", "MANIFEST.md"), encoding="utf-8").read()
    benches = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[:4] == ["flock", "-x", "/tmp/cpu.lock", "python"], line
        path = os.path.join(root, argv[4])
        assert os.path.isfile(path), line
        assert f"`{shlex.join(argv[3:])}`" in manifest, f"{line!r} is not the command in MANIFEST.md"
        benches.append(os.path.basename(path)[:-3])
    assert benches == ["threads", "straggler", "feature_parallel", "async_ps", "convergence"]
    bad = subprocess.run(["bash", script, "--dry-run", "nosuch"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown benchmark 'nosuch'" in bad.stderr
    one = subprocess.run(["bash", script, "-n", "straggler"], capture_output=True, text=True, timeout=30)
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 1 and "straggler.py" in one.stdout


def test_no_raw_benchmark_output_is_tracked():
    """Raw per-run JSONL under bench/results/ stays out of git (.gitignore); tables stay in."""
    import os
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if shutil.which("git") is None or not os.path.exists(os.path.join(root, ".git")):
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "-C", root, "ls-files", "bench/results"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
    assert tracked and not [f for f in tracked if f.endswith(".jsonl")]
    assert "bench/results/convergence/table.md" in tracked and "bench/results/MANIFEST.md" in tracked
    ignored = subprocess.run(["git", "-C", root, "check-ignore", "-q", "bench/results/convergence/x-p4.jsonl"],
                             timeout=30)
    assert ignored.returncode == 0


def test_consensus_bench_matches_the_predicted_rate(tmp_path):
    """bench/consensus.py: the contraction per gossip round equals max(|λ2|, |λn|) to 4 decimals
    (issue 24 item 9's values at p = 5 and 8) and each row names the real graph."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, os.path.join(root, "bench", "consensus.py"), "--procs", "5,8",
                          "--rounds", "80", "--no-plot", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=scaled(240))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {(r["p"], r["topology"]): r for r in json.loads((tmp_path / "table.json").read_text())["rows"]}
    want = {(5, "ring"): 0.5393, (5, "torus"): 0.5393, (8, "ring"): 0.8047, (8, "hypercube"): 0.5,
            (8, "torus"): 0.5, (8, "exponential"): 0.3333, (5, "exponential"): 0.0}
    for key, rate in want.items():
        assert round(rows[key]["measured"], 4) == rate == round(rows[key]["predicted"], 4), rows[key]
        assert rows[key]["max_round_ratio"] <= rows[key]["predicted"] + 1e-9
    assert "(= ring: 5 is prime)" in rows[(5, "torus")]["shape"]
    assert "4 decimals: True" in (tmp_path / "table.md").read_text()
