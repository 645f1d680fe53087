"""Streaming vs in-memory training in one mpiexec launch.

    mpiexec -n P python stream_cases.py DIR

Trains the same model three ways on a two-file dense float64 data set: (a) streamed
from disk in small chunks (``memory_budget``), (b) held in memory with the same
chunked row order (``stream_in_memory``), (c) in memory with the default order.
(a) and (b) must be bit-identical; (c) must reach a close objective. Then the algorithms
with serving ranks (the last rank serves and streams no rows): ``ps`` BSP streamed and held
(bit-identical), asynchronous ``ps`` and ``easgd_async`` streamed (they train).
"""

import json
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mpidml.data.synth import binary_dense_blocks, write_blocks  # noqa: E402
from mpidml.train import TrainConfig, train  # noqa: E402

comm = MPI.COMM_WORLD.Dup()
root = os.path.join(sys.argv[1], "stream-set")
if comm.Get_rank() == 0:
    write_blocks(root, binary_dense_blocks(3001, 8, seed=4, dtype=np.float64), 3001, 8,
                 np.float64, np.float32, shards=2)
comm.Barrier()
common = dict(data=root, epochs=3, batch_size=100, lr=0.3, quiet=True, seed=5)
budget = 40_000  # bytes: chunks of 16 kB = 225 rows, so steps span chunk and file boundaries
streamed = train(TrainConfig(memory_budget=budget, **common), comm)
held = train(TrainConfig(memory_budget=budget, stream_in_memory=True, **common), comm)
plain = train(TrainConfig(**common), comm)
bsp = dict(common, algo="ps", staleness="0")
ps_streamed = train(TrainConfig(memory_budget=budget, **bsp), comm)
ps_held = train(TrainConfig(memory_budget=budget, stream_in_memory=True, **bsp), comm)
asgd = train(TrainConfig(memory_budget=budget, **dict(bsp, staleness="inf")), comm)
easgd = train(TrainConfig(memory_budget=budget, algo="easgd_async", tau=4, **common), comm)
if comm.Get_rank() == 0:
    sys.stdout.write(json.dumps({
        "ps_identical": bool(np.array_equal(ps_streamed["params"], ps_held["params"])),
        "ps_bsp": ps_streamed["objective"], "ps_asgd": asgd["objective"], "easgd_async": easgd["objective"],
        "size": comm.Get_size(),
        "identical": bool(np.array_equal(streamed["params"], held["params"])),
        "objective_streamed": streamed["objective"], "objective_held": held["objective"],
        "objective_plain": plain["objective"], "initial": streamed["objective_initial"],
        "replicas_identical": streamed["params_identical"]}) + "\n")
