"""Training algorithms behind one small interface (``base.Algorithm``); ``--algo NAME``.

    sync         BSP: ring allreduce of the gradient every step (optionally compressed)
    local_sgd    local SGD / model averaging every τ steps; post-local SGD
    easgd        elastic averaging SGD, synchronous (eamsgd: with Nesterov momentum)
    easgd_async  EASGD where each worker meets the centre (a dedicated rank) at its own pace
    gossip       D-PSGD over a topology with Metropolis–Hastings weights
    pushsum      stochastic gradient push on a time-varying one-peer exponential graph
    choco        CHOCO-SGD: gossip of compressed differences
    ps           parameter server: BSP / SSP / ASGD / DC-ASGD (--servers, --staleness, --dc-lambda)
    admm         consensus ADMM: local proximal steps, z-update (with the L2 term) by allreduce
    feature_parallel  model parallelism: column blocks of X and w, partial margins allreduced
"""

from __future__ import annotations

from .base import Algorithm, AlgoContext, Control, Outcome

__all__ = ["ALGOS", "make_algorithm", "Algorithm", "AlgoContext", "Control", "Outcome"]

ALGOS = ("sync", "local_sgd", "easgd", "eamsgd", "easgd_async", "gossip", "pushsum", "choco", "ps",
         "admm", "feature_parallel")


def make_algorithm(name: str, ctx: AlgoContext) -> Algorithm:
    from .admm import ADMM
    from .choco import Choco
    from .feature_parallel import FeatureParallel
    from .easgd import EASGD
    from .easgd_async import AsyncEASGD
    from .gossip import Gossip
    from .local_sgd import LocalSGD
    from .ps import ParameterServer
    from .pushsum import PushSum
    from .sync import Sync

    table = {"sync": Sync, "local_sgd": LocalSGD, "easgd": EASGD, "eamsgd": EASGD, "easgd_async": AsyncEASGD, "gossip": Gossip,
             "pushsum": PushSum, "choco": Choco, "ps": ParameterServer}
    table.update(admm=ADMM, feature_parallel=FeatureParallel)
    if name not in table:
        raise ValueError(f"unknown --algo {name!r}; choose from {', '.join(ALGOS)}")
    return table[name](ctx)
