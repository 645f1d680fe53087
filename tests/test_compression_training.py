"""Compressed sync training (issue 24 items 2, 3): bytes per rank against sync's at p = 2, 4, 8
(bench/compression_bytes.py's worker: every codec in one launch per p), the top-k default run
within 1 % of the scipy optimum at p = 4, and the warning when the objective rises."""

import json
import os
import sys

import pytest

from mpirun import run_mpi

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "compression_bytes.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    sys.path.insert(0, os.path.dirname(BENCH))
    from compression_bytes import make_data  # the benchmark's own data set (2048 x 100)

    return make_data(str(tmp_path_factory.mktemp("bytes")), 100)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_compressed_bytes_per_rank_vs_sync(tiny, p):
    res = run_mpi(p, [BENCH, "--worker", tiny], timeout=600)
    assert res.returncode == 0, res.output
    got = json.loads(res.stdout.strip().splitlines()[-1])
    rows = {r["codec"]: r for r in got["rows"]}
    sync = rows["none"]["bytes"]
    assert sync > 0 and all(r["identical"] for r in rows.values()), rows
    ratio = {c: rows[c]["bytes"] / sync for c in rows}
    # fp16 is reduced in a ring: half of sync's payload plus the control slots, at every p
    # (all-gathered it was 0.56x at p = 2, 1.1x at p = 4 and 2x at p = 8)
    assert ratio["fp16"] <= 0.55, ratio
    # QSGD reduced by segment: int8 levels both ways, about a quarter of sync's (was 0.3 .. 1.0x)
    assert ratio["qsgd"] <= 0.45, ratio
    # top-k (k = 8 of 101 with momentum correction): no more than sync's at any p
    assert ratio["topk"] < 1.0, ratio
    # fp16 trains the same run as sync up to fp16 rounding
    assert abs(rows["fp16"]["objective"] - rows["none"]["objective"]) < 1e-3, rows


@pytest.fixture(scope="module")
def convex(tmp_path_factory):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reference import binary_problem

    return binary_problem(str(tmp_path_factory.mktemp("convex")), 20_000, 2_000, 100, 2024, 1e-4)


def test_topk_defaults_converge_at_p4(convex, tmp_path):
    """Defaults (momentum 0.9, lr 0.5, --topk-ratio 0.01): was 0.693 -> 0.99 at epoch 2, ending
    0.74 against 0.458; with DGC momentum correction (k >= 8) within 1 % of the optimum."""
    m = tmp_path / "m.jsonl"
    res = run_mpi(4, ["-m", "mpidml.train", "--data", convex["train"], "--compress", "topk", "--metrics", str(m)],
                  timeout=300)
    assert res.returncode == 0, res.output
    recs = [json.loads(line) for line in open(m)]
    summary = recs[-1]
    assert summary["objective"] <= convex["f_star"] * 1.01, (summary["objective"], convex["f_star"])
    assert summary["params_identical"] is True
    assert "warning: the objective rose" not in res.stdout
    assert not [r for r in recs if r["type"] == "warning"]


def test_warning_when_the_objective_rises(convex, tmp_path):
    """Any algorithm: sync with --lr 40 overshoots (0.69 -> 5.0 at epoch 1 here); rank 0 warns
    once, naming the epoch and both objectives, and the metrics get one warning record."""
    m = tmp_path / "m.jsonl"
    res = run_mpi(2, ["-m", "mpidml.train", "--data", convex["train"], "--lr", "40", "--epochs", "4",
                      "--metrics", str(m), "-q"], timeout=300)
    assert res.returncode == 0, res.output
    warns = [line for line in res.stdout.splitlines() if line.startswith("warning: the objective rose at epoch")]
    assert len(warns) == 1, res.stdout
    recs = [json.loads(line) for line in open(m)]
    w = [r for r in recs if r["type"] == "warning"]
    epochs = {r["epoch"]: r["objective"] for r in recs if r["type"] == "epoch"}
    assert len(w) == 1 and w[0]["objective"] == epochs[w[0]["epoch"]] > w[0]["previous"]
