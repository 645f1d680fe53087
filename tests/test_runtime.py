"""Pure runtime helpers: rank lists in error messages, fault specs, atomic files."""

import os

import pytest

from mpidml.runtime.atomic import atomic_path
from mpidml.runtime.errors import CollectiveError, format_ranks
from mpidml.runtime.faults import parse_fault


@pytest.mark.parametrize("ranks,text", [([3], "rank 3"), ([0, 1, 2], "ranks 0-2"),
                                        ([0, 1, 2, 5], "ranks 0-2,5"), ([1, 3, 4], "ranks 1,3-4")])
def test_format_ranks(ranks, text):
    assert format_ranks(ranks) == text


def test_collective_error_groups_identical_messages():
    err = CollectiveError("loading", [(0, "a"), (1, "b"), (2, "a")])
    assert str(err).splitlines() == ["loading failed on 3 rank(s):", "  ranks 0,2: a", "  rank 1: b"]


def test_parse_fault():
    import numpy as np

    from mpidml.runtime.faults import InjectedFault

    assert parse_fault(None) is None and parse_fault("") is None
    plan = parse_fault("raise:2:7,nan:1:3,sleep:0:1:0.01,ckpt-crash:2")
    with pytest.raises(InjectedFault, match="step 7 on rank 2"):
        plan.check(2, 7)
    plan.check(2, 6)
    g = np.zeros(3)
    plan.corrupt_grad(1, 3, g)
    assert np.isnan(g[0])
    assert plan.checkpoint_hook() is None and callable(plan.checkpoint_hook())
    # a step-keyed fault fires once, at the first step >= S the rank takes (async workers skip steps)
    plan = parse_fault("nan:1:5,raise:0:9,ckpt-crash:1")
    g = np.zeros(3)
    plan.corrupt_grad(1, 4, g)
    assert not np.isnan(g[0])
    plan.corrupt_grad(1, 24, g)
    assert np.isnan(g[0])
    g[0] = 0.0
    plan.corrupt_grad(1, 25, g)
    assert not np.isnan(g[0])
    plan.resume_at(10)          # resumed past step 9: the raise already happened in the first run
    plan.check(0, 11)
    assert callable(plan.checkpoint_hook())   # checkpoint-keyed faults are not step-keyed
    for bad in ("raise:2", "kill:1:2", "raise:a:b", "sleep:1:2"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "good" and os.listdir(tmp_path) == ["f.txt"]
    with atomic_path(target) as tmp:
        with open(tmp, "w") as fh:
            fh.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["f.txt"]


def test_thread_policy():
    from mpidml.runtime.threads import auto_threads, parse_threads

    assert auto_threads(2, 4, env={}) == 1          # oversubscribed: never 0
    assert auto_threads(16, 4, env={}) == 4
    assert auto_threads(16, 3, env={}) == 5
    assert auto_threads(16, 4, env={"OMP_NUM_THREADS": "2"}) == 2   # the user's export wins
    assert auto_threads(16, 4, env={"OMP_NUM_THREADS": "x"}) == 4   # junk is ignored
    assert auto_threads(16, 4, env={"OMP_NUM_THREADS": "0"}) == 4
    assert parse_threads("auto") == 0 and parse_threads(" 3 ") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="--threads must be"):
            parse_threads(bad)
