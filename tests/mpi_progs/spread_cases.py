"""``Algorithm.disagreement()`` against numpy (issue 24 item 4), several algorithms in one launch.
Rank 0 prints one JSON line: {"p": p, "results": [{"case", "ok", "detail"}]}.

Every rank's parameters are set to distinct random vectors; rank 0 gathers the vectors
of the ranks that hold a model (for easgd_async: every rank but the centre, whose own
buffer is zeros in training and is set to something large here so that counting it
would show) and computes max_i ‖x_i − x̄‖ / ‖x̄‖ with numpy.
"""

import json

import numpy as np
from mpi4py import MPI

from mpidml.algos import AlgoContext, make_algorithm
from mpidml.models import make_model
from mpidml.optim import make_optimizer
from mpidml.train import TrainConfig

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
results = []
D = 9


def record(name, ok, detail=""):
    oks = comm.allgather(bool(ok))
    results.append({"case": name, "ok": all(oks), "detail": str(detail),
                    "bad_ranks": [r for r, o in enumerate(oks) if not o]})


def numpy_spread(models):
    X = np.asarray(models, dtype=np.float64)
    mean = X.mean(axis=0)
    return float(np.max(np.linalg.norm(X - mean, axis=1)) / np.linalg.norm(mean))


def check(algo_name, dtype, **cfg_kw):
    cfg = TrainConfig(algo=algo_name, optimizer="sgd", **cfg_kw)
    model = make_model("logreg", D, 2, np.dtype(dtype), 0.0, ())
    params = model.init_params(seed=0)
    algo = make_algorithm(algo_name, AlgoContext(comm, model, params, make_optimizer("sgd", params, 0.0), cfg))
    rng = np.random.default_rng(100 + rank)
    algo.params[:] = 1.0 + rng.standard_normal(algo.npar)     # mean far from 0: a finite ratio
    if algo.serves:
        algo.params[:] = 1e6 if rank % 2 else 0.0            # must not count
    got = algo.disagreement()
    gathered = comm.gather((algo.serves, algo.params.astype(np.float64)), root=0)
    if rank == 0:
        members = [x for serves, x in gathered if not serves]
        want = numpy_spread(members)
        detail = {"got": got, "numpy": want, "members": len(members)}
        ok = got is not None and abs(got - want) <= 1e-6 * want + (1e-12 if dtype == np.float64 else 1e-6)
    else:
        ok, detail = True, ""
    got_all = comm.allgather(got)
    record(f"spread_{algo_name}_{np.dtype(dtype).name}", ok and len(set(got_all)) == 1, detail)


if p >= 2:
    check("easgd_async", np.float64)
    check("easgd_async", np.float32)
check("gossip", np.float64)
check("easgd", np.float64)

if rank == 0:
    print(json.dumps({"p": p, "results": results}))
