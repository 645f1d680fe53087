"""A checkpoint directory belongs to one run (issue 25, items 1-3): the lock, fresh runs
into used directories, the temp-file sweep, resume's choice of checkpoint, changed
settings on resume, the attribute checksum. Pure unit tests first, then mpiexec runs."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from mpidml.checkpoint import (
    RESUME_RULES,
    DirectoryLock,
    compare_configs,
    data_identity,
    list_checkpoints,
    read_checkpoint,
    read_manifest,
    select_checkpoint,
    write_checkpoint,
)
from mpidml.data.synth import make_binary_dense
from mpidml.runtime.atomic import sweep_temp_files
from mpidml.runtime.errors import MpidmlError
from mpidml.train import TrainConfig

from mpirun import mpiexec_path, run_mpi, test_env

MODEL = {"kind": "logreg", "d": 4, "dtype": "float32", "nparams": 5}
HOST = socket.gethostname()


def save(d, step, run_id="run-a", keep=3, model=MODEL):
    state = {"params": np.arange(5, dtype=np.float32) * step}
    per_rank = [{"residual": np.full(3, r + step, np.float64)} for r in range(2)]
    return write_checkpoint(str(d), step, {"model": model, "epoch": 1, "config": {"lr": 0.5},
                                           "run_id": run_id}, state, per_rank, keep=keep)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------
# pure

def test_compare_configs_sorts_changes_by_the_table():
    saved = {"batch_size": 256, "lr": 0.5, "epochs": 2, "metrics": "a.jsonl", "quiet": False,
             "data": {"path": "/d/a.h5", "shape": [6000, 12], "sha256": "aa"},
             "model": {"kind": "logreg", "d": 12}, "seed": 0, "only_then": 1}
    now = {**saved, "batch_size": 4096, "lr": 0.1, "metrics": "b.jsonl", "quiet": True,
           "data": {"path": "/d/a.h5", "shape": [6000, 12], "sha256": "bb"}, "only_now": 2}
    breaking, allowed = compare_configs(saved, now)
    assert breaking == ["batch_size 256 -> 4096", "data.sha256 aa -> bb"]
    assert allowed == ["lr 0.5 -> 0.1"]                       # metrics, quiet ignored; one-sided keys skipped
    assert compare_configs(saved, saved) == ([], [])
    b, a = compare_configs({"seed": 0, "partition": "contiguous", "model": {"d": 12}, "momentum": 0.9, "l2": 0.0},
                           {"seed": 1, "partition": "shuffle", "model": {"d": 7}, "momentum": 0.5, "l2": 0.1})
    assert b == ["seed 0 -> 1", "partition contiguous -> shuffle", "model.d 12 -> 7"]
    assert a == ["momentum 0.9 -> 0.5", "l2 0.0 -> 0.1"]
    assert compare_configs({"tuple": (1, 2)}, {"tuple": [1, 2]}) == ([], [])   # as JSON stores them
    assert compare_configs({"brand_new": 1}, {"brand_new": 2}) == ([], ["brand_new 1 -> 2"])  # unclassified: consent


def test_every_train_setting_is_classified():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields - set(RESUME_RULES) == set(), "add the new TrainConfig field to checkpoint.RESUME_RULES"
    assert set(RESUME_RULES.values()) == {"breaking", "allowed", "ignored"}


@pytest.mark.parametrize("kw,msg", [
    ({"overwrite_checkpoints": True}, "it needs --checkpoint-dir"),
    ({"checkpoint_dir": "ck", "resume": True, "overwrite_checkpoints": True}, "cannot be combined with --resume"),
    ({"checkpoint_dir": "ck", "resume_with_changes": True}, "--resume-with-changes needs --resume"),
])
def test_new_flags_are_checked(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw).validate()


def test_tampered_attributes_and_contents_are_damage(tmp_path):
    good = save(tmp_path, 10)
    assert read_checkpoint(good).meta["step"] == 10
    newest = save(tmp_path, 20)
    with h5py.File(newest, "r+") as f:            # the case: step edited, data intact
        f.attrs["step"] = 1100
    with pytest.raises(MpidmlError, match="attributes fail their checksum"):
        read_checkpoint(newest)
    ck, skipped = select_checkpoint(str(tmp_path), "run-a")
    assert ck.meta["step"] == 10 and skipped[0][0] == newest and "attributes fail" in skipped[0][1]
    for edit in ("config", "drop", "sha"):
        path = save(tmp_path, 30)
        with h5py.File(path, "r+") as f:
            if edit == "config":
                f.attrs["config"] = json.dumps({"lr": 5.0})
            elif edit == "drop":                  # a dataset removed
                del f["rank/1/residual"]
            else:                                 # data and its own checksum rewritten together
                f["state/params"][0] = 99
                f["state/params"].attrs["sha256"] = "0" * 64
        with pytest.raises(MpidmlError, match="fail|differ"):
            read_checkpoint(path)


def test_pruning_keeps_other_runs_files(tmp_path):
    for step in (10, 20, 30, 40):
        save(tmp_path, step, run_id="mine", keep=2)
    save(tmp_path, 5, run_id="theirs", keep=2)
    save(tmp_path, 50, run_id="mine", keep=2)
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [5, 40, 50]
    ck, skipped = select_checkpoint(str(tmp_path), "theirs")
    assert ck.meta["step"] == 5 and [os.path.basename(p) for p, _ in skipped] == ["ckpt-000000050.h5",
                                                                                  "ckpt-000000040.h5"]
    assert "written by run mine, not by this directory's run theirs" in skipped[0][1]


def test_data_identity_fingerprints_content(tmp_path):
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    make_binary_dense(a, 3000, 6, seed=1)
    first = data_identity(a)
    assert first["shape"] == [3000, 6] and first["files"] == 1 and first["path"] == a
    shutil.copy(a, b)
    assert data_identity(b)["sha256"] == first["sha256"]          # same bytes elsewhere: only the path differs
    make_binary_dense(a, 3000, 6, seed=2)                         # regenerated: same path, shape
    assert data_identity(a)["sha256"] != first["sha256"]
    make_binary_dense(a, 3001, 6, seed=1)
    assert data_identity(a)["shape"] == [3001, 6]


def test_lock_names_its_holder_and_is_released(tmp_path):
    first = DirectoryLock(str(tmp_path))
    first.acquire()
    with pytest.raises(MpidmlError, match=f"in use by another job: host {HOST}, pid {os.getpid()}, since"):
        DirectoryLock(str(tmp_path)).acquire()
    first.release()
    again = DirectoryLock(str(tmp_path))
    again.acquire()
    assert again.held
    del again                                    # garbage collection drops it too
    DirectoryLock(str(tmp_path)).acquire()


def test_sweep_removes_only_dead_writers_files(tmp_path):
    names = {"live": f".ckpt-000000009.h5.@{HOST}@{os.getpid()}@abc.tmp",
             "dead": f".ckpt-000000008.h5.@{HOST}@{dead_pid()}@abc.tmp",
             "remote": ".ckpt-000000007.h5.@elsewhere@1@abc.tmp",
             "legacy": ".ckpt-000000006.h5.k2j3h4.tmp"}
    for name in names.values():
        (tmp_path / name).write_text("x")
    removed, kept = sweep_temp_files(str(tmp_path), ".ckpt-*.tmp", exclusive=False)
    assert sorted(os.path.basename(p) for p in removed) == [names["dead"]]
    removed, kept = sweep_temp_files(str(tmp_path), ".ckpt-*.tmp", exclusive=True)   # under the lock
    assert sorted(os.path.basename(p) for p in removed) == sorted([names["remote"], names["legacy"]])
    assert [os.path.basename(p) for p in kept] == [names["live"]]


# ---------------------------------------------------------------------------------------
# under mpiexec

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("owndata")
    path = str(d / "train.h5")
    make_binary_dense(path, 6000, 12, seed=3)
    return path


def train(p, data, ckdir, metrics, *extra, timeout=120):
    return run_mpi(p, ["-m", "mpidml.train", "--data", data, "--epochs", "2", "--batch-size", "256",
                       "--checkpoint-dir", str(ckdir), "--checkpoint-every", "20", "--metrics", str(metrics),
                       "-q", *extra], timeout=timeout)


def records(path):
    return [json.loads(line) for line in open(path)]


def snapshot(ck):
    return {name: os.stat(ck / name).st_mtime_ns for name in os.listdir(ck) if name != ".lock"}


def test_fresh_run_into_used_dir_is_refused_or_replaces_it(data, tmp_path):
    ck = tmp_path / "ck"
    assert train(2, data, ck, tmp_path / "a.jsonl").returncode == 0
    before = snapshot(ck)
    res = train(2, data, ck, tmp_path / "b.jsonl", "--seed", "5")
    assert res.returncode == 2, res.output
    old_run = read_manifest(str(ck))["run_id"]
    assert (f"holds 3 checkpoint(s) of run {old_run} (ckpt-000000020.h5, ckpt-000000040.h5, ckpt-000000048.h5)"
            in res.stderr and "--overwrite-checkpoints" in res.stderr)
    assert snapshot(ck) == before                                    # nothing pruned, nothing written
    res = train(2, data, ck, tmp_path / "b.jsonl", "--seed", "5", "--overwrite-checkpoints")
    assert res.returncode == 0 and "moved 3 checkpoint(s) of run" in res.stdout, res.output
    new = records(tmp_path / "b.jsonl")[-1]
    assert os.path.exists(new["checkpoint"])                         # the summary names a file that exists
    assert sorted(os.listdir(ck)) == [".lock", "ckpt-000000020.h5", "ckpt-000000040.h5", "ckpt-000000048.h5",
                                      "manifest.json"]               # the moved-aside set is gone
    run = read_manifest(str(ck))["run_id"]
    assert run != old_run and all(read_checkpoint(p).meta["run_id"] == run for _, p in list_checkpoints(str(ck)))
    res = train(2, data, ck, tmp_path / "c.jsonl", "--seed", "5", "--resume")
    assert res.returncode == 0, res.output
    again = records(tmp_path / "c.jsonl")[-1]
    assert again["resumed_from_step"] == 48 and again["params_digest"] == new["params_digest"]   # the new run's model


def test_second_job_on_a_locked_dir_is_refused_at_once(data, tmp_path):
    ck, metrics = tmp_path / "ck", tmp_path / "first.jsonl"
    cmd = [mpiexec_path(), "-n", "2", sys.executable, "-m", "mpidml.train", "--data", data, "--epochs", "8",
           "--batch-size", "256", "--checkpoint-dir", str(ck), "--checkpoint-every", "10", "-q",
           "--metrics", str(metrics), "--inject-fault", "slow:0:0.05"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=test_env(),
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (metrics.exists() and metrics.read_text()):         # the header: the lock is held
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = train(2, data, ck, tmp_path / "second.jsonl")
        assert first.poll() is None, "the first job ended before the second was refused: lengthen it"
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    assert second.returncode == 2, second.output
    assert f"checkpoint directory {ck} is in use by another job: host {HOST}, pid " in second.stderr
    assert not os.path.exists(tmp_path / "second.jsonl") or "summary" not in (tmp_path / "second.jsonl").read_text()
    assert first.returncode == 0, out + err
    run = read_manifest(str(ck))["run_id"]
    assert [read_checkpoint(p).meta["run_id"] for _, p in list_checkpoints(str(ck))] == [run] * 3
    assert records(metrics)[-1]["steps"] == 8 * 24


def test_live_writers_temp_file_survives_the_sweep(data, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    live = ck / f".ckpt-000000099.h5.@{HOST}@{os.getpid()}@abcdefgh.tmp"     # this test process: alive
    dead = ck / f".ckpt-000000098.h5.@{HOST}@{dead_pid()}@abcdefgh.tmp"
    legacy = ck / ".ckpt-000000097.h5.q1w2e3r4.tmp"                          # no writer in the name
    for f in (live, dead, legacy):
        f.write_text("partial")
    res = train(2, data, ck, tmp_path / "m.jsonl")
    assert res.returncode == 0, res.output
    assert live.exists() and not dead.exists() and not legacy.exists()
    assert f"note: keeping {live}: its writer may still be running" in res.stdout


def test_resume_falls_back_past_intruders_and_damage_to_its_own(data, tmp_path):
    ck = tmp_path / "ck"
    crash = train(2, data, ck, tmp_path / "m.jsonl", "--inject-fault", "raise:1:45")
    assert crash.returncode != 0 and [s for s, _ in list_checkpoints(str(ck))] == [20, 40]
    run = read_checkpoint(str(ck / "ckpt-000000040.h5")).meta.get("run_id")
    intruder = save(ck, 900, run_id="intruder", model={**MODEL, "d": 99})   # another job's newer checkpoint
    damaged = str(ck / "ckpt-000000045.h5")
    shutil.copy(ck / "ckpt-000000040.h5", damaged)
    with h5py.File(damaged, "r+") as f:
        f.attrs["step"] = 45                                            # an edited step: damage
    res = train(2, data, ck, tmp_path / "r.jsonl", "--resume")
    assert res.returncode == 0, res.output
    assert f"resume: skipping {intruder}: written by run intruder, not by this directory's run {run}" in res.stdout
    assert f"resume: skipping {damaged}: damaged: {damaged}: attributes fail their checksum" in res.stdout
    assert records(tmp_path / "r.jsonl")[-1]["resumed_from_step"] == 40
    assert os.path.exists(intruder)                                     # another run's file is never pruned
    # nothing of this run left: refused, naming each file and why
    for _, path in list_checkpoints(str(ck)):
        if path != intruder:
            os.unlink(path)
    res = train(2, data, ck, tmp_path / "r.jsonl", "--resume")
    assert res.returncode == 2 and "1 checkpoint file(s) but none is usable" in res.stderr, res.output
    assert "ckpt-000000900.h5: written by run intruder" in res.stderr


def test_resume_refuses_changed_settings_unless_allowed(data, tmp_path):
    ck = tmp_path / "ck"
    assert train(2, data, ck, tmp_path / "a.jsonl").returncode == 0
    before = snapshot(ck)
    res = train(2, data, ck, tmp_path / "b.jsonl", "--resume", "--batch-size", "4096", "--seed", "2")
    assert res.returncode == 2, res.output
    assert "break this run:\n    batch_size 256 -> 4096\n    seed 0 -> 2" in res.stderr
    res = train(2, data, ck, tmp_path / "b.jsonl", "--resume", "--batch-size", "4096", "--resume-with-changes")
    assert res.returncode == 2 and "batch_size 256 -> 4096" in res.stderr, res.output   # never allowed
    res = train(2, data, ck, tmp_path / "b.jsonl", "--resume", "--lr", "0.1", "--epochs", "3")
    assert res.returncode == 2 and "epochs 2 -> 3\n    lr 0.5 -> 0.1" in res.stderr, res.output
    assert "pass --resume-with-changes" in res.stderr
    assert snapshot(ck) == before                                       # refusals change nothing
    res = train(2, data, ck, tmp_path / "c.jsonl", "--resume", "--lr", "0.1", "--epochs", "3",
                "--resume-with-changes")
    assert res.returncode == 0, res.output
    assert "resume: continuing with changed settings: epochs 2 -> 3; lr 0.5 -> 0.1" in res.stdout
    recs = records(tmp_path / "c.jsonl")
    assert recs[0]["resume_changes"] == ["epochs 2 -> 3", "lr 0.5 -> 0.1"]
    assert recs[-1]["resumed_from_step"] == 48 and recs[-1]["steps"] == 72
