"""Hogwild inside a rank, as the local step of the model-averaging algorithms.

How it composes: the algorithms with ``accepts_hogwild`` (local_sgd, easgd, gossip) all take "local steps" between
their exchanges — one optimizer step on the rank's own minibatch gradient
(``Algorithm.local_update``). With ``--hogwild-threads T`` that local step becomes a
Hogwild pass instead: the rank's minibatch rows are processed by T numba threads, each
applying per-row SGD updates with step lr/m (m = the rank's rows in the step, so one
pass moves about as far as one minibatch step of lr) to the rank's ONE parameter
buffer without locks (``kernels/hogwild.py``), followed by the L2 decay
w −= lr·l2·w once per step. The loop runs this in place of the gradient computation
(``hogwild_step``) and the algorithm's ``local_update`` is then a no-op
(``local_applied``); everything after it — local SGD's averaging every τ steps, the
EASGD centre meetings, gossip mixing, control points, checkpoints — is unchanged, since
it only sees the parameter buffer. Gossip then mixes the already-updated model
(adapt-then-combine) instead of mixing before the update.

Two levels of parallelism, then: ranks (processes, MPI) × T threads per rank sharing a
model. Limits: logistic regression on CSR data with ``--optimizer sgd`` (per-row
updates have no momentum buffer); the loss reported is each row's at the weights it
read (progressive), not at the step's start.
"""

from __future__ import annotations

import numpy as np

from ..runtime.errors import MpidmlError

__all__ = ["check_hogwild", "start_hogwild", "hogwild_step"]

# Algorithms whose local step can be a Hogwild pass (they call ``local_update``) say so
# with ``accepts_hogwild = True`` (local_sgd, easgd, gossip).


def check_hogwild(cfg, shard) -> None:
    """Raise when the loaded data cannot take Hogwild passes (dense rows)."""
    if not shard.sparse:
        raise MpidmlError(f"--hogwild-threads needs CSR (sparse) training data; {cfg.data} is dense")


def start_hogwild(algo, threads: int) -> None:
    """Use ``threads`` numba threads for the passes; the algorithm skips its own local step."""
    import numba

    numba.set_num_threads(int(threads))
    algo.local_applied = True


def hogwild_step(model, pieces, params, lr: float, grad: np.ndarray) -> float:
    """The rank's local step as Hogwild passes over the step's ``pieces``, then the L2
    decay; ``params`` updated in place, ``grad`` left zero. Returns the summed loss."""
    from ..kernels._common import add_scaled

    m = sum(len(rows) for _, _, rows in pieces)
    grad[:] = 0
    if m == 0:
        return 0.0
    loss = 0.0
    for X, y, rows in pieces:
        loss += model.sgd_pass(X, y, rows, params, lr / m)
    model.add_regularizer_grad(params, grad)
    add_scaled(params, grad, params.dtype.type(-lr))
    grad[:] = 0
    return loss
