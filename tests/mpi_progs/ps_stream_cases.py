"""Out-of-core (``memory_budget``) training for the algorithms with serving ranks.

    mpiexec -n P python ps_stream_cases.py DIR

On a two-file dense data set, in one launch:
- ``ps`` with ``staleness 0`` (BSP, deterministic) streamed from disk in small chunks and the
  same run held in memory with the streamed row order (``stream_in_memory``): bit-identical;
- ``ps`` asynchronous (``staleness inf``) and ``easgd_async``, streamed: they train.
The last rank serves and streams no rows.
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
root = os.path.join(sys.argv[1], "ps-stream-set")
if comm.Get_rank() == 0:
    write_blocks(root, binary_dense_blocks(3001, 8, seed=4, dtype=np.float64), 3001, 8,
                 np.float64, np.float32, shards=2)
comm.Barrier()
common = dict(data=root, epochs=3, batch_size=100, lr=0.3, quiet=True, seed=5)
budget = 40_000  # bytes: chunks of 16 kB = 225 rows, so steps span chunk and file boundaries
bsp = dict(algo="ps", staleness="0", **common)
streamed = train(TrainConfig(memory_budget=budget, **bsp), comm)
held = train(TrainConfig(memory_budget=budget, stream_in_memory=True, **bsp), comm)
asgd = train(TrainConfig(memory_budget=budget, algo="ps", staleness="inf", **common), comm)
easgd = train(TrainConfig(memory_budget=budget, algo="easgd_async", tau=4, **common), comm)
if comm.Get_rank() == 0:
    sys.stdout.write(json.dumps({
        "size": comm.Get_size(),
        "identical": bool(np.array_equal(streamed["params"], held["params"])),
        "initial": streamed["objective_initial"], "bsp": streamed["objective"],
        "asgd": asgd["objective"], "easgd_async": easgd["objective"]}) + "\n")
