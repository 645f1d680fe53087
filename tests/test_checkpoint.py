"""Checkpoint format (pure, no MPI): round trip, keep-K, damage detection, crash mid-write."""

import os
import signal
import time

import h5py
import numpy as np
import pytest

from mpidml.checkpoint import check_compatible, latest_checkpoint, list_checkpoints, read_checkpoint, write_checkpoint
from mpidml.runtime.errors import MpidmlError
from mpidml.runtime.signals import StopRequest
from mpidml.runtime.watchdog import Watchdog

MODEL = {"kind": "logreg", "d": 4, "dtype": "float32", "nparams": 5}


def save(d, step, **kw):
    state = {"params": np.arange(5, dtype=np.float32) * step, "velocity": np.ones(5) * step}
    per_rank = [{"residual": np.full(3, r + step, np.float64)} for r in range(2)]
    return write_checkpoint(str(d), step, {"model": MODEL, "epoch": 1, "config": {"lr": 0.5}},
                            state, per_rank, **kw)


def test_round_trip_keeps_dtypes_and_meta(tmp_path):
    path = save(tmp_path, 7)
    ck = read_checkpoint(path)
    assert ck.meta["step"] == 7 and ck.meta["model"] == MODEL and ck.meta["config"] == {"lr": 0.5}
    assert ck.state["params"].dtype == np.float32 and np.array_equal(ck.state["params"], np.arange(5) * 7)
    assert [r["residual"][0] for r in ck.per_rank] == [7.0, 8.0]
    check_compatible(ck, MODEL)
    with pytest.raises(MpidmlError, match="d 4 in the checkpoint vs 9 now"):
        check_compatible(ck, {**MODEL, "d": 9})


def test_keeps_last_k(tmp_path):
    for step in (10, 20, 30, 40):
        save(tmp_path, step, keep=2)
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [30, 40]
    assert latest_checkpoint(str(tmp_path)).meta["step"] == 40


def test_corrupt_newest_is_skipped_loudly(tmp_path):
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    with h5py.File(newest, "r+") as f:           # flip data behind the checksum
        f["state/params"][0] = 99
    notes = []
    ck = latest_checkpoint(str(tmp_path), log=notes.append)
    assert ck.meta["step"] == 1 and "fails its checksum" in notes[0]
    with open(newest, "r+b") as fh:               # truncate: not even HDF5
        fh.truncate(100)
    with pytest.raises(MpidmlError, match="cannot read checkpoint"):
        read_checkpoint(newest)


def test_crash_during_write_leaves_previous(tmp_path):
    save(tmp_path, 1)

    def crash(tmp):
        assert os.path.getsize(tmp) > 0
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 2, crash_hook=crash)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000000001.h5"]   # no temp file, no half file
    assert latest_checkpoint(str(tmp_path)).meta["step"] == 1


def test_stop_request_and_watchdog():
    stop = StopRequest()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested == signal.SIGUSR1
    finally:
        stop.restore()
    said = []
    dog = Watchdog(0.3, rank=2, size=4, on_stall=said.append)
    dog.beat("allreduce", 17)
    time.sleep(1.2)
    dog.stop()
    assert said and "rank 2 of 4" in said[0] and "in allreduce at step 17" in said[0]
