"""Your own SPMD training loop on mpidml's building blocks.

    mpiexec -n 4 python examples/spmd_logreg.py [TRAIN.h5]

Each rank reads its own rows of the HDF5 file (``load_shard``), computes the summed
loss and gradient of its part of every global minibatch with the numba kernel
behind ``LogReg``, and one ``ring_allreduce`` of a fused buffer
``[gradient sums | loss sum | count]`` gives every rank the exact global mean.
Without an argument, rank 0 writes a small synthetic set to a temporary directory.
"""

import os
import sys
import tempfile

import numpy as np
from mpi4py import MPI

from mpidml import SGD, LogReg, load_shard, ring_allreduce, shard_rows
from mpidml.data.synth import make_binary_dense

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()

if len(sys.argv) > 1:
    path = sys.argv[1]
else:
    path = os.path.join(tempfile.gettempdir(), "mpidml-example-train.h5")
    if rank == 0 and not os.path.exists(path):
        make_binary_dense(path, n=20_000, d=20, seed=1)   # atomic: temp file + rename
    comm.Barrier()

shard = load_shard(path, size, rank)                     # only this rank's rows
model = LogReg(shard.d, dtype=shard.X.dtype, l2=1e-4)
params = model.init_params()                             # one flat buffer
opt = SGD(params, momentum=0.9)
npar = model.nparams
buf = np.zeros(npar + 2, dtype=params.dtype)             # [grad sums | loss sum | count]

global_batch = 256
steps = -(-shard.n_total // global_batch)                # same on every rank
rng = np.random.default_rng(rank)
for epoch in range(3):
    order = rng.permutation(shard.n)
    for s in range(steps):
        a, b = shard_rows(shard.n, steps, s)            # my share of this global batch
        buf[npar] = model.loss_grad_sum(shard.X, shard.y, order[a:b], params, buf[:npar])
        buf[npar + 1] = b - a
        ring_allreduce(comm, buf)                        # global sums, identical on all ranks
        grad = buf[:npar] / buf[npar + 1]
        model.add_regularizer_grad(params, grad)
        opt.step(grad, lr=0.2)
    mean_loss = buf[npar] / buf[npar + 1]
    if rank == 0:
        print(f"epoch {epoch + 1}: last minibatch loss {mean_loss:.4f}", flush=True)

ok = comm.allgather(params.tobytes())
if rank == 0:
    print("replicas identical:", all(x == ok[0] for x in ok))
