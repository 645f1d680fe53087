"""A user's model and a user's algorithm through the Python API, in one mpiexec launch.

    mpiexec -n P python plugin_cases.py DATA.h5

Prints (rank 0) one JSON line: the summaries of mpidml.fit with the Poisson model
class under the plug-in algorithm (by registered name) and under sync, and with a
model instance; each rank's parameter digest.
"""

import hashlib
import json
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins"))

import avg_every_step  # noqa: E402,F401  (registers "avg_every_step")
from poisson_model import Poisson  # noqa: E402

import mpidml  # noqa: E402

comm = MPI.COMM_WORLD
path = sys.argv[1]
common = dict(epochs=20, batch_size=200, lr=0.05, optimizer="sgd", lr_schedule="constant", l2=1e-3, quiet=True)
out = {}
for key, model, algo in [("plugin", Poisson, "avg_every_step"), ("sync", Poisson, "sync"),
                         ("instance", Poisson(6, np.float64, l2=1e-3), "sync")]:
    res = mpidml.fit(model, data=path, algo=algo, **common)
    digests = comm.allgather(hashlib.sha256(res.params.tobytes()).hexdigest()[:16])
    s = res.summary
    out[key] = {"objective": s["objective"], "objective_initial": s["objective_initial"],
                "identical": len(set(digests)) == 1, "params": res.params.astype(float).tolist(),
                "model": type(res.model).__name__, "rmse": s["test_rmse"]}
try:
    mpidml.fit(Poisson, data=path, epoch=3)
except ValueError as exc:
    out["typo"] = str(exc)
try:   # an algorithm that builds its own model refuses a user's model instead of ignoring it
    mpidml.fit(Poisson, data=path, algo="feature_parallel", epochs=1, quiet=True)
except Exception as exc:  # noqa: BLE001 (the collective error of every rank)
    out["own_model"] = str(exc)
if comm.Get_rank() == 0:
    print(json.dumps(out))
