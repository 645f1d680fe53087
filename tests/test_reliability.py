"""Checkpoint/resume, signals, NaN guard, stall watchdog and bad reliability inputs,
under mpiexec with timeouts."""

import json
import os
import signal
import sys
import time

import pytest

from mpidml.data.synth import make_binary_dense

from mpirun import finish, kill_group, mpiexec_path, rank_pids, run_mpi, scaled, spawn


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("reldata")
    paths = {"train": str(d / "train.h5"), "other": str(d / "other.h5")}
    make_binary_dense(paths["train"], 6000, 12, seed=3)
    make_binary_dense(paths["other"], 600, 7, seed=4)
    return paths


def listing(ckdir):
    """The directory's files but its owner's (manifest.json, .lock: tests/test_checkpoint_ownership.py)."""
    return sorted(f for f in os.listdir(ckdir) if f not in ("manifest.json", ".lock"))


def summary(path):
    return [json.loads(line) for line in open(path)][-1]


def train(p, data, ckdir, metrics, *extra, timeout=120):
    return run_mpi(p, ["-m", "mpidml.train", "--data", data["train"], "--epochs", "3", "--batch-size", "256",
                       "--checkpoint-dir", str(ckdir), "--metrics", str(metrics), "-q", *extra], timeout=timeout)


def test_resume_after_crash_is_bit_for_bit_and_elastic(data, tmp_path):
    ref = train(3, data, tmp_path / "a", tmp_path / "a.jsonl", "--checkpoint-every", "20")
    assert ref.returncode == 0, ref.output
    crash = train(3, data, tmp_path / "b", tmp_path / "b.jsonl", "--checkpoint-every", "20",
                  "--inject-fault", "raise:1:50")
    assert crash.returncode != 0 and "rank 1 of 3 failed" in crash.stderr
    assert listing(tmp_path / "b") == ["ckpt-000000020.h5", "ckpt-000000040.h5"]
    res = train(3, data, tmp_path / "b", tmp_path / "b.jsonl", "--checkpoint-every", "20", "--resume")
    assert res.returncode == 0, res.output
    a, b = summary(tmp_path / "a.jsonl"), summary(tmp_path / "b.jsonl")
    assert b["resumed_from_step"] == 40 and b["steps"] == a["steps"] == 72
    assert b["params_digest"] == a["params_digest"]          # same bits as never interrupted
    # elastic: a p=4 checkpoint resumed on p=2 reaches the same objective within tolerance
    four = train(4, data, tmp_path / "c", tmp_path / "c.jsonl", "--checkpoint-every", "30",
                 "--inject-fault", "raise:0:31")
    assert four.returncode != 0
    two = train(2, data, tmp_path / "c", tmp_path / "c.jsonl", "--resume")
    assert two.returncode == 0 and "re-partitioned for 2 rank(s)" in two.stdout, two.output
    assert abs(summary(tmp_path / "c.jsonl")["objective"] - a["objective"]) < 2e-3


def test_checkpoint_write_killed_midway_keeps_previous(data, tmp_path):
    res = train(2, data, tmp_path / "k", tmp_path / "k.jsonl", "--checkpoint-every", "20",
                "--inject-fault", "ckpt-crash:2")
    assert res.returncode != 0 and "injected crash while writing checkpoint" in res.stderr
    files = listing(tmp_path / "k")
    # the previous checkpoint is intact; the killed write left only its temporary file
    assert files[0].startswith(".ckpt-000000040.h5.") and files[1:] == ["ckpt-000000020.h5"], files
    res = train(2, data, tmp_path / "k", tmp_path / "k.jsonl", "--checkpoint-every", "20", "--resume")
    assert res.returncode == 0 and summary(tmp_path / "k.jsonl")["resumed_from_step"] == 20, res.output
    assert not [f for f in os.listdir(tmp_path / "k") if f.endswith(".tmp")]   # swept on start


def test_sigterm_checkpoints_and_resume_continues(data, tmp_path):
    ck, metrics = tmp_path / "s", tmp_path / "s.jsonl"
    cmd = [mpiexec_path(), "-n", "3", sys.executable, "-m", "mpidml.train", "--data", data["train"],
           "--epochs", "20000", "--batch-size", "256", "--checkpoint-dir", str(ck), "-q",
           "--metrics", str(metrics)]
    proc = spawn(cmd)
    try:
        # wait until training is under way: the first epoch record is in the metrics file
        deadline = time.monotonic() + scaled(90)
        while not (metrics.exists() and '"type": "epoch"' in metrics.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = kill_group(proc)
                pytest.fail(f"training did not start (rc {proc.returncode}):\n{out}\n{err}")
            time.sleep(0.2)
        pids = rank_pids(proc, ck)
        assert pids
        os.kill(pids[-1], signal.SIGTERM)     # as Slurm signals a task before the time limit
        out, err = finish(proc, 60, "the job after SIGTERM of one rank")
    finally:
        kill_group(proc)
    assert proc.returncode == 3, out + err
    assert "stopped by a signal at step" in out
    files = listing(ck)
    assert len(files) == 1
    stopped_at = int(files[0][5:14])
    res = run_mpi(3, ["-m", "mpidml.train", "--data", data["train"], "--epochs", "20000", "--batch-size",
                      "256", "--checkpoint-dir", str(ck), "--resume", "-q", "--metrics", str(metrics),
                      "--inject-fault", f"raise:0:{stopped_at + 3}"], timeout=120)
    # the resumed run starts at the checkpoint's step: the fault 3 steps later fires
    assert f"injected fault at step {stopped_at + 3}" in res.stderr, res.output
    assert f"(step {stopped_at}, written by 3 rank(s))" in res.stdout


def test_nan_stops_every_rank_naming_the_rank(data, tmp_path):
    res = run_mpi(3, ["-m", "mpidml.train", "--data", data["train"], "--epochs", "2", "-q",
                      "--checkpoint-dir", str(tmp_path / "n"), "--checkpoint-every", "3",
                      "--inject-fault", "nan:2:7"], timeout=60)
    assert res.returncode == 4, res.output
    assert "rank 2: loss or gradient is NaN/inf at step 7" in res.stderr
    assert "last good checkpoint: " + str(tmp_path / "n" / "ckpt-000000006.h5") in res.stderr


def test_stall_watchdog_names_where_ranks_are(data, tmp_path):
    t0 = time.monotonic()
    res = run_mpi(3, ["-m", "mpidml.train", "--data", data["train"], "--epochs", "50", "-q",
                      "--stall-timeout", "3", "--inject-fault", "sleep:1:5:60"], timeout=60)
    assert res.returncode != 0 and time.monotonic() - t0 < 30
    assert "no progress for" in res.stderr
    assert "in communicate at step 5" in res.stderr or "in compute at step 5" in res.stderr


@pytest.mark.parametrize("case", ["unwritable", "other_model", "all_corrupt", "resume_no_dir", "bad_fault"])
def test_bad_reliability_inputs(data, tmp_path, case):
    ck = tmp_path / "ck"
    args = ["-m", "mpidml.train", "--data", data["train"], "--epochs", "1", "-q", "--checkpoint-dir", str(ck)]
    if case == "unwritable":
        (tmp_path / "file").write_text("x")
        args[-1] = str(tmp_path / "file" / "sub")   # a directory below a regular file
        expect = "checking the checkpoint directory"
    elif case == "other_model":
        assert train(2, data, ck, tmp_path / "m.jsonl").returncode == 0
        args += ["--resume"]
        args[args.index(data["train"])] = data["other"]
        expect = "break this run:\n    data.path "   # then data.shape, data.sha256, model.d 12 -> 7 ...
    elif case == "all_corrupt":
        assert train(2, data, ck, tmp_path / "m.jsonl").returncode == 0
        only = ck / listing(ck)[0]
        with open(only, "r+b") as fh:
            fh.truncate(64)
        args += ["--resume"]
        expect = "1 checkpoint file(s) but none is usable; refusing to start over"
    elif case == "resume_no_dir":
        args = args[:-2] + ["--resume"]
        expect = "--resume and --checkpoint-every need --checkpoint-dir"
    else:
        args += ["--inject-fault", "boom:1"]
        expect = "--inject-fault: bad item"
    before = listing(ck) if ck.exists() else None
    res = run_mpi(2, args, timeout=60)
    assert res.returncode == 2 and expect in res.stderr, res.output
    if before is not None:
        assert listing(ck) == before                      # nothing lost or overwritten


def test_debug_collectives_flag_checks_a_whole_run_without_changing_it(data, tmp_path):
    """--debug-collectives on every collective of a checkpointed gossip run (neighbour exchanges,
    control allreduces, broadcasts, checkpoint gathers): same bits as the unchecked run."""
    args = ["--algo", "gossip", "--checkpoint-every", "20"]
    plain = train(3, data, tmp_path / "p", tmp_path / "p.jsonl", *args)
    checked = train(3, data, tmp_path / "d", tmp_path / "d.jsonl", *args, "--debug-collectives")
    assert plain.returncode == 0 and checked.returncode == 0, plain.output + checked.output
    assert summary(tmp_path / "d.jsonl")["params_digest"] == summary(tmp_path / "p.jsonl")["params_digest"]
    header = json.loads(open(tmp_path / "d.jsonl").readline())
    assert header["config"]["debug_collectives"] is True
    assert summary(tmp_path / "d.jsonl")["collectives_checked"] > 72   # 3 epochs x 24 steps, each a neighbour exchange
