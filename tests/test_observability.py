"""Metrics JSONL, --config TOML, Chrome-trace timeline, the plot command."""

import json
import os
import shlex
import shutil
import sys

import pytest

from mpidml.data.synth import make_binary_dense

from mpirun import mpiexec_path, run, run_mpi

EPOCH_FIELDS = {"type", "epoch", "step", "samples", "train_seconds", "objective", "grad_norm",
                "test_accuracy", "test_loss", "learning_rate", "samples_per_second", "bytes_communicated",
                "compute_seconds", "communication_seconds", "wait_seconds", "disagreement"}
SUMMARY_FIELDS = {"type", "epochs", "steps", "world_size", "objective_initial", "objective", "grad_norm",
                  "test_accuracy", "train_seconds", "startup_seconds", "compile_seconds", "load_seconds",
                  "wall_seconds", "samples_per_second", "bytes_communicated", "params_identical",
                  "params_digest", "checkpoint", "resumed_from_step", "allreduce_calls"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("obs")
    make_binary_dense(str(d / "train.h5"), 4000, 8, seed=1, stream=0)
    make_binary_dense(str(d / "test.h5"), 1000, 8, seed=1, stream=1)
    return d


def records(path):
    return [json.loads(line) for line in open(path)]


def test_metrics_timeline_and_config_match_flags(data, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(f'data = "{data / "train.h5"}"\ntest = "{data / "test.h5"}"\n'
                    'epochs = 3\nbatch-size = 128\nlr = 0.3\nlr_schedule = "constant"\n')
    a = run_mpi(3, ["-m", "mpidml.train", "--config", str(toml), "--metrics", str(tmp_path / "a.jsonl"),
                    "--timeline", str(tmp_path / "t.json"), "--metrics-every", "5"], timeout=120)
    b = run_mpi(3, ["-m", "mpidml.train", "--data", str(data / "train.h5"), "--test", str(data / "test.h5"),
                    "--epochs", "3", "--batch-size", "128", "--lr", "0.3", "--lr-schedule", "constant",
                    "--metrics", str(tmp_path / "b.jsonl")], timeout=120)
    assert a.returncode == 0 and b.returncode == 0, a.output + b.output
    ra, rb = records(tmp_path / "a.jsonl"), records(tmp_path / "b.jsonl")
    assert ra[-1]["params_digest"] == rb[-1]["params_digest"]          # same run
    assert ra[0]["config"]["config"] == str(toml) and ra[0]["config"]["batch_size"] == 128
    epochs = [r for r in ra if r["type"] == "epoch"]
    assert len(epochs) == 3 and all(set(r) == EPOCH_FIELDS for r in epochs)
    steps = [r for r in ra if r["type"] == "step"]
    assert steps and [r["step"] for r in steps] == list(range(5, epochs[-1]["step"] + 1, 5))
    assert all(0 < r["train_loss"] < 1 and r["bytes_sent_received"] > 0 for r in steps)
    assert set(ra[-1]) == SUMMARY_FIELDS and ra[0]["type"] == "header" and ra[0]["world_size"] == 3
    for r in epochs:   # what rank 0 printed is what the log says
        assert f"epoch {r['epoch']:>3}/3  objective {r['objective']:.6f}" in a.stdout
        assert r["learning_rate"] == pytest.approx(0.3) and 0.2 < r["test_loss"] < 0.7
        assert r["compute_seconds"] > 0 and r["communication_seconds"] > 0 and r["wait_seconds"] >= 0
    assert epochs[-1]["bytes_communicated"] == ra[-1]["bytes_communicated"] > 0   # max over ranks
    trace = json.loads((tmp_path / "t.json").read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in events} == {0, 1, 2}
    assert {"compute", "communicate", "evaluate"} <= {e["name"] for e in events}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in events)
    # flags override the file
    c = run_mpi(1, ["-m", "mpidml.train", "--config", str(toml), "--epochs", "1", "-q"], timeout=60)
    assert c.returncode == 0 and "done: 1 epochs" in c.stdout


def test_config_rejects_unknown_keys(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("epochz = 3\n")
    res = run([sys.executable, "-m", "mpidml.train", "--config", str(toml)], timeout=60)
    assert res.returncode == 2 and "unknown setting 'epochz'" in res.stderr


def test_plot_writes_png(data, tmp_path):
    m = tmp_path / "m.jsonl"
    assert run_mpi(2, ["-m", "mpidml.train", "--data", str(data / "train.h5"), "--test", str(data / "test.h5"),
                       "--epochs", "2", "--metrics", str(m), "-q"], timeout=60).returncode == 0
    out = tmp_path / "curves.png"
    res = run([sys.executable, "-m", "mpidml.plot", str(m), str(m), "-o", str(out)], timeout=120)
    assert res.returncode == 0, res.output
    blob = out.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 20_000
    bad = run([sys.executable, "-m", "mpidml.plot", str(tmp_path / "nope.jsonl")], timeout=60)
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_launcher_on_terminal_walks_a_fake_proc(tmp_path):
    """rank -> hydra proxy -> mpiexec; the launcher's stderr decides (a terminal, a log file)."""
    from mpidml.progress import launcher_on_terminal

    def proc(pid, ppid, name, stderr):
        d = tmp_path / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({name} x) S {ppid} 1 1 0\n")   # a comm with a space
        (d / "comm").write_text(name + "\n")
        os.symlink(stderr, d / "fd" / "2")
    proc(30, 20, "python", "pipe:[1]")
    proc(20, 10, "hydra_pmi_proxy", "pipe:[2]")
    proc(10, 5, "mpiexec", "/dev/pts/3")
    proc(5, 1, "bash", "/dev/pts/3")
    proc(31, 21, "python", "pipe:[1]")
    proc(21, 11, "slurmstepd", "pipe:[2]")
    proc(11, 1, "srun", "/var/spool/slurm/job42.out")
    proc(32, 5, "python", "/dev/pts/3")                 # no launcher among its ancestors
    assert launcher_on_terminal(30, proc=str(tmp_path))
    assert not launcher_on_terminal(31, proc=str(tmp_path))
    assert not launcher_on_terminal(32, proc=str(tmp_path))
    assert not launcher_on_terminal(99, proc=str(tmp_path))


@pytest.mark.skipif(not shutil.which("script"), reason="needs script(1) to give mpiexec a terminal")
def test_progress_auto_draws_a_bar_when_mpiexec_is_on_a_terminal(data):
    """Hydra gives ranks pipes and no controlling terminal; auto still sees the user's terminal."""
    cmd = [mpiexec_path(), "-n", "2", sys.executable, "-m", "mpidml.train", "--data", str(data / "train.h5"),
           "--epochs", "1", "--batch-size", "64", "--progress", "auto"]
    res = run(["script", "-qec", shlex.join(cmd), "/dev/null"], timeout=60)
    assert res.returncode == 0, res.output
    assert "step/s" in res.stdout and "%|" in res.stdout, res.stdout[-2000:]   # tqdm's bar


def test_progress_modes_and_verbose(data):
    base = ["-m", "mpidml.train", "--data", str(data / "train.h5"), "--epochs", "1", "--batch-size", "64"]
    plain = run_mpi(2, base + ["--progress", "plain", "--progress-every", "0", "-v"], timeout=60)
    assert plain.returncode == 0, plain.output
    lines = [l for l in plain.stderr.splitlines() if l.startswith("  epoch 1/1  step ")]
    assert len(lines) >= 10 and "samples/s" in lines[-1]           # periodic lines, rank 0 only
    assert "  rank 1 on " in plain.stdout and "rows 2000..4000" in plain.stdout
    bar = run_mpi(2, base + ["--progress", "bar"], timeout=60)
    assert bar.returncode == 0 and "epoch 1/1" in bar.stderr and "step" in bar.stderr, bar.output
    none = run_mpi(2, base + ["--progress", "none"], timeout=60)
    assert none.returncode == 0 and "step" not in none.stderr       # auto under a pipe = plain, none = none
