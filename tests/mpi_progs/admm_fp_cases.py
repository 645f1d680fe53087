"""feature_parallel and admm under mpiexec, many cases in one launch.

argv[1]: a JSON file {"grad_sets": [[path, dtype], ...], "runs": [{"name", "cfg"}, ...]}.
Rank 0 prints one JSON line: {"p": p, "grads": [...], "runs": [...]}:
* grads: per data set, the largest difference between the feature-parallel loss /
  gradient / correct count of a random minibatch and the data-parallel (full-model)
  ones, and whether ``consensus()`` reassembles the full vector exactly;
* runs: per training configuration (``TrainConfig`` fields), the final summary's
  objective, test metric and bytes (the test compares them with reference optima).
"""

import json
import sys

import numpy as np
from mpi4py import MPI

from mpidml.algos import AlgoContext, make_algorithm
from mpidml.algos.feature_parallel import BlockLogReg
from mpidml.data.loader import load_feature_block, load_shard
from mpidml.models import make_model
from mpidml.optim import make_optimizer
from mpidml.train import TrainConfig, train

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
spec = json.load(open(sys.argv[1]))
report = {"p": p, "grads": [], "runs": []}

for path, dtype in spec["grad_sets"]:
    full = load_shard(path, 1, 0)                      # every row, every column (the reference)
    block = load_feature_block(path, p, rank)          # every row, this rank's columns
    d = full.d
    dt = full.X.dtype
    rng = np.random.default_rng(7)                     # same draws on every rank
    w = (rng.standard_normal(d + 1) * 0.5).astype(dt)
    rows = rng.choice(full.n, size=min(40, full.n), replace=False).astype(np.int64)
    ref = make_model("logreg", d, 2, dt, 1e-3)
    g_ref = np.empty(d + 1, dt)
    loss_ref = ref.loss_grad_sum(full.X, full.y, rows, w, g_ref)
    correct_ref = ref.metric_sum(full.X, full.y, rows, w)
    c0, c1 = block.columns
    model = BlockLogReg(comm, d, (c0, c1), dt, 1e-3)
    params = np.concatenate([w[c0:c1], w[-1:]])
    g = np.empty_like(params)
    loss = model.loss_grad_sum(block.X, block.y, rows, params, g)
    correct = model.metric_sum(block.X, block.y, rows, params)
    scale = max(float(np.abs(g_ref).max()), 1.0)
    gdiff = max(float(np.abs(g[:-1] - g_ref[c0:c1]).max(initial=0.0)), abs(float(g[-1] - g_ref[-1]))) / scale
    opt = make_optimizer("sgd", params, 0.0)
    algo = make_algorithm("feature_parallel", AlgoContext(comm, model, params, opt,
                                                         TrainConfig(algo="feature_parallel")))
    assembled = algo.consensus()
    rec = {"set": path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1], "dtype": dtype,
           "grad_rel_diff": max(comm.allgather(gdiff)),
           "loss_rel_diff": max(comm.allgather(abs(loss - loss_ref) / abs(loss_ref))),
           "correct_equal": all(comm.allgather(int(correct) == int(correct_ref))),
           "assembled_exact": all(comm.allgather(bool(np.array_equal(assembled, w)))),
           "weights_per_rank": algo.weights_per_rank}
    report["grads"].append(rec)

for run in spec["runs"]:
    cfg = TrainConfig(**{"quiet": True, "progress": "none", **run["cfg"]})
    s = train(cfg, comm)
    report["runs"].append({"name": run["name"], "objective": s["objective"],
                           "objective_initial": s["objective_initial"],
                           "metric": s.get("test_accuracy", s.get("test_rmse")),
                           "params_identical": s["params_identical"], "bytes": s["bytes_communicated"]})

if rank == 0:
    print(json.dumps(report))
comm.Free()
