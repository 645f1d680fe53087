"""Regression tests (issue 24, items 1 and 5): the stall watchdog and signal stops
across the whole run, not only inside the training loop.

- a long, healthy evaluation beats the watchdog and is not killed; a real stall inside
  an evaluation still is;
- a signal stop writes its checkpoint without first running a full evaluation;
- SIGINT stops like SIGTERM (exit 3, checkpoint);
- signals that arrive once the last step is done (final evaluation, final checkpoint,
  summary, teardown) never kill the run: it ends 0 with its checkpoint.
"""

import json
import os
import pathlib
import signal
import sys
import time

import pytest

from mpidml.data.synth import make_binary_dense

from mpirun import finish, kill_group, mpiexec_path, rank_pids, run, run_mpi, scaled, spawn


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("wdata")
    path = str(d / "train.h5")
    make_binary_dense(path, 40000, 12, seed=5)      # 20,000 rows per rank at p = 2: 3 evaluation chunks
    return path


def records(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def test_long_evaluation_is_not_a_stall_but_a_stall_in_evaluation_is(data):
    # every evaluation chunk sleeps 0.45 s on every rank: an evaluation pass takes ~1.4 s, longer
    # than the 1 s stall limit, while each chunk beats the watchdog
    ok = run_mpi(2, ["-m", "mpidml.train", "--data", data, "--epochs", "1", "--batch-size", "4096", "-q",
                     "--stall-timeout", "1", "--inject-fault", "slow-eval:*:0.45"], timeout=120)
    assert ok.returncode == 0, ok.output
    assert "no progress" not in ok.stderr
    t0 = time.monotonic()
    stuck = run_mpi(2, ["-m", "mpidml.train", "--data", data, "--epochs", "1", "-q",
                        "--stall-timeout", "1", "--inject-fault", "slow-eval:1:60"], timeout=120)
    assert stuck.returncode != 0 and time.monotonic() - t0 < 30, stuck.output
    # the stuck rank, or the rank waiting for it in the evaluation's allreduce, names the phase
    assert "of 2: no progress for" in stuck.stderr and "in evaluate" in stuck.stderr, stuck.output


def _start(data, ck, metrics, *extra, n=2, env=None):
    """A training job of ``n`` ranks; its checkpoint directory ``ck`` names its processes for
    ``rank_pids``."""
    cmd = [mpiexec_path(), "-n", str(n), sys.executable, "-m", "mpidml.train", "--data", data, "--batch-size", "256",
           "--checkpoint-dir", str(ck), "--metrics", str(metrics), "--metrics-every", "1", "-q", *extra]
    return spawn(cmd, env=env)


def _wait_for(proc, metrics, predicate, what):
    deadline = time.monotonic() + scaled(90)
    while not any(predicate(r) for r in records(metrics)):
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = kill_group(proc)
            pytest.fail(f"{what} never happened (rc {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stop_checkpoints_without_evaluating(data, tmp_path, sig):
    # an evaluation would take >= 3 chunks x 3 s = 9 s; the stop must not wait for one
    ck, metrics = tmp_path / "ck", tmp_path / "m.jsonl"
    proc = _start(data, ck, metrics, "--epochs", "200", "--eval-every", "0", "--inject-fault", "slow-eval:*:3")
    try:
        _wait_for(proc, metrics, lambda r: r.get("type") == "step" and r["step"] >= 5, "training")
        pids = rank_pids(proc, ck)
        assert pids
        t0 = time.monotonic()
        os.kill(pids[-1], sig)
        out, err = finish(proc, 60, "the job after the signal")
        took = time.monotonic() - t0
    finally:
        kill_group(proc)
    assert proc.returncode == 3, out + err
    assert took < 6, f"the stop took {took:.1f} s: it evaluated before checkpointing?\n{out}{err}"
    assert "stopped by a signal at step" in out and "Traceback" not in err, out + err
    assert len([f for f in os.listdir(ck) if f.startswith("ckpt-")]) == 1
    recs = records(metrics)
    epochs = [r for r in recs if r.get("type") == "epoch"]
    # the stop record closes the log; the partial epoch has no epoch record, and nothing was evaluated
    assert recs[-1]["type"] == "stop" and all(r["objective"] is None for r in epochs)
    assert not epochs or recs[-1]["step"] > epochs[-1]["step"]


def test_signals_after_the_last_step_end_the_run_normally(data, tmp_path):
    # SIGTERM to every rank every 50 ms from the last step's record until the job exits: final
    # evaluation, final checkpoint, summary and teardown all happen under signals
    ck, metrics = tmp_path / "ck", tmp_path / "m.jsonl"
    steps = 40000 // 256 + 1
    proc = _start(data, ck, metrics, "--epochs", "1", "--inject-fault", "slow-eval:*:0.3")
    try:
        _wait_for(proc, metrics, lambda r: r.get("type") == "step" and r["step"] == steps, "the last step")
        pids = rank_pids(proc, ck)
        sent = 0
        while proc.poll() is None and sent < 400:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            sent += 1
            time.sleep(0.05)
        out, err = finish(proc, 60, "the job under repeated SIGTERM")
    finally:
        kill_group(proc)
    assert sent > 3, "the run ended before the signals could test anything"
    assert proc.returncode == 0, f"rc {proc.returncode}\n{out}\n{err}"
    assert "done: 1 epochs" in out
    assert os.listdir(ck) and records(metrics)[-1]["type"] == "summary"


def test_signals_at_random_moments_end_in_0_or_3_and_resume_bit_for_bit(tmp_path):
    """A small slice of bench/signal_soak.py (the committed soak runs 50 per rank count):
    each run ends 0 or 3, and every exit-3 run resumes to the uninterrupted parameters."""
    soak = str(pathlib.Path(__file__).resolve().parents[1] / "bench" / "signal_soak.py")
    res = run([sys.executable, soak, "--runs", "6", "--procs", "2", "--seed", "7", "--out", str(tmp_path / "s.md")],
              timeout=600)
    assert res.returncode == 0, res.output
    assert "Failures: 0" in (tmp_path / "s.md").read_text()


@pytest.mark.parametrize("sigs", [(signal.SIGTERM, signal.SIGTERM)])
def test_signal_during_start_up_and_a_repeated_one_stop_with_a_checkpoint(data, tmp_path, sigs):
    # issue 25 item 5: 1 s after the ranks exist (MPI start-up, imports, data load), before any step;
    # a second SIGTERM 50 ms after the first. Before: rc 15 and no checkpoint; SIGHUP: rc -1, no message
    ck, metrics = tmp_path / "ck", tmp_path / "m.jsonl"
    proc = _start(data, ck, metrics, "--epochs", "200")
    try:
        deadline = time.monotonic() + scaled(30)
        while len(rank_pids(proc, ck)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)
        pids = rank_pids(proc, ck)
        for sig in sigs:
            os.kill(pids[-1], sig)
            time.sleep(0.05)
        out, err = finish(proc, 90, "the job after a start-up signal")
    finally:
        kill_group(proc)
    assert proc.returncode == 3, f"rc {proc.returncode}\n{out}\n{err}"
    assert "stopped by a signal at step" in out and "Traceback" not in err, out + err
    assert [f for f in os.listdir(ck) if f.startswith("ckpt-")]
