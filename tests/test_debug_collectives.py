"""Collective debug mode (mpidml.comm.debug): pure signature comparison, and under mpiexec
at p = 2, 3, 4 every entry point checked once with unchanged results and every kind of
mismatch a clear error on all ranks within seconds."""

import json
import os

import numpy as np
import pytest

from mpidml.comm import debug

from mpirun import HERE, run_mpi

PROG = os.path.join(HERE, "mpi_progs", "debug_cases.py")


class _Comm:
    def __init__(self, size=2):
        self.size = size

    def Get_size(self):
        return self.size

    def py2f(self):
        return 12345


def _sig(name, buf=None, seq=1, **kw):
    sig = debug.checked(_Comm(), name, buf, **kw).sig
    sig["seq"] = seq
    return sig


def test_compare_names_first_mismatching_field():
    a = _sig("ring_allreduce", np.zeros(10, np.float32), op="sum")
    assert debug.compare([a, dict(a)]) is None
    b = _sig("ring_allreduce", np.zeros(10, np.float64), op="avg")   # dtype and op differ: dtype first
    err = debug.compare([a, a, b])
    assert isinstance(err, debug.CollectiveMismatch) and err.field == "dtype" and err.exit_code == 1
    assert str(err).startswith("collective #1 mismatch (dtype differs): ranks 0-1 called "
                               "ring_allreduce(count=10, float32, op=sum) at test_debug_collectives.py:")
    assert "rank 2 called ring_allreduce(count=10, float64, op=avg)" in str(err)
    assert debug.compare([a, _sig("ring_allreduce", np.zeros(10, np.float32), seq=2, op="sum")]).field == "seq"
    err = debug.compare([a, None])
    assert err.field == "collective" and "rank 1 not in an mpidml collective" in str(err)


def test_compare_point_to_point_pairing():
    def nb(to, send=4, recv=4):
        return _sig("neighbor_exchange", p2p={"to": to, "send": np.zeros(send), "recv": [np.zeros(recv)] * len(to)})
    assert debug.compare([nb([1, 2]), nb([0, 2]), nb([0, 1])]) is None
    assert debug.compare([nb([1, 2]), nb([0, 2]), nb([0])]).field == "neighbors"
    err = debug.compare([nb([1]), nb([0], recv=3)])
    assert err.field == "count/dtype" and "rank 0 sends 4 x float64 to rank 1, which receives 3 x float64" in str(err)

    def sh(shift, send=4, recv=4):
        return _sig("shift_exchange", p2p={"shift": shift, "send": np.zeros(send), "recv": np.zeros(recv)})
    assert debug.compare([sh(1), sh(1), sh(1)]) is None
    assert debug.compare([sh(1), sh(1), sh(2)]).field == "shift"
    assert debug.compare([sh(1), sh(1, send=5), sh(1)]).field == "count/dtype"


def test_enable_disable_and_env_default():
    was = debug.enabled()
    try:
        debug.enable()
        assert debug.enabled() and debug.on
        debug.disable()
        assert not debug.enabled()
    finally:
        (debug.enable if was else debug.disable)()


@pytest.mark.parametrize("p", [2, 3, 4])
def test_debug_mode_under_mpiexec(p):
    res = run_mpi(p, [PROG], timeout=240, env={"MPIDML_DEBUG_COLLECTIVES": "1"})
    assert res.returncode == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["size"] == p and report["env_enabled"] and report["seqs_agree"]
    bad = [c for c in report["results"] if not c["ok"]]
    assert not bad, bad
    mism = {c["case"]: c for c in report["results"] if c["kind"] == "mismatch"}
    assert set(mism) == {"count", "dtype", "op", "other_collective", "root", "impl", "neighbor_size",
                         "neighbor_list", "shift", "unchecked", "iallreduce"}
    assert all(c["seconds"] < 5 for c in mism.values()), mism
    matched = [c for c in report["results"] if c["kind"] == "match"]
    assert len(matched) == 2 * 27 and all(c["checks"] == 1 for c in matched)


def test_uncaught_mismatch_ends_the_job_with_one_message():
    res = run_mpi(3, [PROG, "--uncaught"], timeout=60, env={"MPIDML_DEBUG_COLLECTIVES": "1"})
    assert res.returncode == 1, res.output
    assert res.stderr.count("collective #1 mismatch (name differs)") == 1, res.stderr
    assert "ranks 1-2 called bcast(count=8, float64, root=0, impl=native)" in res.stderr
    assert res.seconds < 30
