"""Streaming vs in-memory training in one mpiexec launch.

    mpiexec -n P python stream_cases.py DIR

Trains the same model three ways on a two-file dense float64 data set: (a) streamed
from disk in small chunks (``memory_budget``), (b) held in memory with the same
chunked row order (``stream_in_memory``), (c) in memory with the default order.
(a) and (b) must be bit-identical; (c) must reach a close objective.
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
if comm.Get_rank() == 0:
    sys.stdout.write(json.dumps({
        "size": comm.Get_size(),
        "identical": bool(np.array_equal(streamed["params"], held["params"])),
        "objective_streamed": streamed["objective"], "objective_held": held["objective"],
        "objective_plain": plain["objective"], "initial": streamed["objective_initial"],
        "replicas_identical": streamed["params_identical"]}) + "\n")
