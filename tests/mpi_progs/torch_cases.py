"""A PyTorch MLP through mpidml.adapters.torch, against mpidml's own MLP, in one launch.

    mpiexec -n P python torch_cases.py DATA.h5

The torch network starts from the bits of ``mpidml.MLP(d, K, hidden).init_params(seed)``
(weights transposed into ``nn.Linear``'s layout, ``reset=False``), so both models run the
same optimisation and their objectives can be compared closely. Rank 0 prints one JSON
line: per algorithm, the objective of each and whether each rank's parameters are the
same bits.
"""

import hashlib
import json
import sys

import numpy as np
import torch
from mpi4py import MPI

import mpidml
from mpidml.adapters.torch import TorchModel

D, K, HIDDEN = 12, 3, (16,)
comm = MPI.COMM_WORLD
path = sys.argv[1]
common = dict(epochs=6, batch_size=64, lr=0.1, optimizer="momentum", momentum=0.9, lr_schedule="constant",
              l2=1e-3, seed=4, quiet=True)


def torch_mlp():
    """nn.Sequential with mpidml's MLP initial weights (W_l is (in, out) there, (out, in) here)."""
    ref = mpidml.MLP(D, K, HIDDEN, dtype=np.float32, l2=common["l2"])
    flat = ref.init_params(seed=common["seed"])
    sizes = [D, *HIDDEN, K]
    layers, off = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(flat[off:off + a * b].reshape(a, b).T.copy()))
            lin.bias.copy_(torch.from_numpy(flat[off + a * b:off + a * b + b]))
        off += a * b + b
        layers += [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    return TorchModel(net, torch.nn.CrossEntropyLoss(reduction="sum"), l2=common["l2"], reset=False)


def identical(params):
    return len(set(comm.allgather(hashlib.sha256(params.tobytes()).hexdigest()))) == 1


out = {}
for algo, extra in [("sync", {}), ("local_sgd", {"tau": 4}), ("gossip", {}), ("easgd", {})]:
    mine = mpidml.fit("mlp", data=path, algo=algo, hidden=",".join(map(str, HIDDEN)), **common, **extra)
    model = torch_mlp()
    theirs = mpidml.fit(model, data=path, algo=algo, **common, **extra)
    out[algo] = {"mpidml": mine.summary["objective"], "torch": theirs.summary["objective"],
                 "initial": theirs.summary["objective_initial"],
                 "accuracy_torch": theirs.summary.get("test_accuracy"),
                 "identical_mpidml": identical(mine.params), "identical_torch": identical(theirs.params),
                 "grad_zero_copy": model._bound["grad"] is not None}
if comm.Get_rank() == 0:
    print(json.dumps(out))
