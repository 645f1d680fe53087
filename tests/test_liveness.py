"""Regression tests (issue 25, item 4): a stopped rank ends the job in < 30 s by default,
at any moment — kernel warm-up, training, evaluation — naming the stopped rank; a healthy
long evaluation is not killed; a live hang ends within the default stall limit.

Before the heartbeat, SIGSTOP during start-up hung > 120 s (the start-up allowance) and
mid-training the default stall limit took 300 s. The < 30 s bounds are the property under
test: they are not scaled.
"""

import glob
import os
import signal
import time

import pytest
from test_watchdog_signals import _start, _wait_for, records

from mpidml.data.synth import make_binary_dense
from mpidml.runtime.watchdog import Watchdog

from mpirun import finish, kill_group, rank_pids, run_mpi, scaled

BOUND = 30.0   # seconds from SIGSTOP to the job's exit


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ldata")
    path = str(d / "train.h5")
    make_binary_dense(path, 40000, 12, seed=5)      # 20,000 rows per rank at p = 2: 3 evaluation chunks
    return path


def _launch(n, data, tmp_path, *extra, env=None):
    # the checkpoint dir only names this job's processes for rank_pids (nothing is written to it before the stop)
    metrics = tmp_path / "m.jsonl"
    return _start(data, tmp_path / "ck", metrics, *extra, n=n, env=env), metrics


def _stop_and_expect_abort(proc, victim_pid, victim_rank, phase):
    """SIGSTOP ``victim_pid``; the job must exit 1 within BOUND s naming the rank and ``phase``."""
    t0 = time.monotonic()
    os.kill(victim_pid, signal.SIGSTOP)
    try:
        out, err = finish(proc, 90, f"the job after SIGSTOP of rank {victim_rank}")
    finally:
        try:
            os.kill(victim_pid, signal.SIGKILL)   # never leave a stopped process behind
        except ProcessLookupError:
            pass
        kill_group(proc)
    took = time.monotonic() - t0
    assert proc.returncode == 1, f"rc {proc.returncode}\n{out}\n{err}"
    assert took < BOUND, f"took {took:.1f} s\n{err}"
    assert f"no heartbeat from rank {victim_rank} for" in err, err
    # the phase, from its last heartbeat — or, stopped before its first one (its heartbeat
    # channel completes at its first MPI progress after start-up), that none came
    assert f"its last heartbeat: {phase}" in err or "no heartbeat received from it yet" in err, err
    return took


def _ranked_pids(proc, ck):
    """The ranks' pids in rank order (the ranks are started in order: pids grow with rank here)."""
    pids = sorted(rank_pids(proc, ck))
    return [p for p in pids if "python" in open(f"/proc/{p}/cmdline").read().split("\0")[0]]


def test_sigstop_during_kernel_compilation(data, tmp_path):
    # an empty numba cache: rank 0 compiles the MLP's kernels for seconds while rank 1 waits; stop
    # rank 0 as soon as its first compiled kernel reaches the cache
    cache = tmp_path / "numba"
    proc, _ = _launch(2, data, tmp_path, "--model", "mlp", "--hidden", "16", "--epochs", "1",
                      env={"NUMBA_CACHE_DIR": str(cache)})
    try:
        deadline = time.monotonic() + scaled(90)
        while not glob.glob(str(cache / "**" / "*.nbi"), recursive=True):
            assert proc.poll() is None and time.monotonic() < deadline, kill_group(proc)
            time.sleep(0.02)
        pids = _ranked_pids(proc, tmp_path / "ck")
        assert len(pids) == 2, pids
    except BaseException:
        kill_group(proc)
        raise
    _stop_and_expect_abort(proc, pids[0], 0, "start-up: compiling kernels")


def test_sigstop_mid_training_p3(data, tmp_path):
    proc, metrics = _launch(3, data, tmp_path, "--epochs", "2000", "--eval-every", "0")
    try:
        _wait_for(proc, metrics, lambda r: r.get("type") == "step" and r["step"] >= 20, "training")
        pids = _ranked_pids(proc, tmp_path / "ck")
        assert len(pids) == 3, pids
    except BaseException:
        kill_group(proc)
        raise
    _stop_and_expect_abort(proc, pids[2], 2, "")    # rank 0 names rank 2, in whatever training phase


def test_sigstop_during_evaluation(data, tmp_path):
    # every evaluation chunk sleeps 2 s: an evaluation takes >= 6 s; stop rank 0 one second into the
    # evaluation after the first epoch's last step
    proc, metrics = _launch(2, data, tmp_path, "--epochs", "50", "--inject-fault", "slow-eval:*:2")
    last = -(-40000 // 256)
    try:
        _wait_for(proc, metrics, lambda r: r.get("type") == "step" and r["step"] == last, "the first epoch")
        time.sleep(1)
        pids = _ranked_pids(proc, tmp_path / "ck")
        assert len(pids) == 2 and not [r for r in records(metrics) if r.get("type") == "epoch"], pids
    except BaseException:
        kill_group(proc)
        raise
    _stop_and_expect_abort(proc, pids[0], 0, "evaluate")


def test_default_limits_spare_a_long_healthy_evaluation_and_end_a_live_hang(data):
    # default --stall-timeout / --liveness-timeout: each evaluation (3 chunks x 8 s = 24 s on every
    # rank) outlasts both limits while beating per chunk
    ok = run_mpi(2, ["-m", "mpidml.train", "--data", data, "--epochs", "1", "--batch-size", "4096", "-q",
                     "--inject-fault", "slow-eval:*:8"], timeout=180)
    assert ok.returncode == 0, ok.output
    assert "no progress" not in ok.stderr and "no heartbeat" not in ok.stderr, ok.output
    # a live rank that makes no progress (a 60 s sleep at step 5): --stall-timeout 20 ends it (the
    # default stays 300 s: a live rank's single compute step or user kernel may take minutes)
    stuck = run_mpi(2, ["-m", "mpidml.train", "--data", data, "--epochs", "1", "-q", "--stall-timeout", "20",
                        "--inject-fault", "sleep:1:5:60"], timeout=120)
    assert stuck.returncode == 1 and stuck.seconds < 40, stuck.output
    assert "rank 1 of 2: no progress for" in stuck.stderr and "no heartbeat" not in stuck.stderr, stuck.output


def test_peer_allowance_extends_a_waiting_rank():
    # unit level: a rank idle past its own limit does not fire while a live peer announces a longer phase
    said = []

    class Peers:             # what the heartbeat reports: a peer in a 3 s phase
        job_allowance = 3.0

        def tick(self, *args):
            return None

        def close(self):
            pass

    dog = Watchdog(0.5, rank=1, size=2, on_stall=said.append)   # no comm: no heartbeat of its own
    dog._live = Peers()
    time.sleep(1.5)
    assert not said
    time.sleep(2.5)
    dog.stop()
    assert said and "a peer's announced allowance 3 s" in said[0], said
