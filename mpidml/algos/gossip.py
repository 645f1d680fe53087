"""``gossip``: decentralized parallel SGD, D-PSGD (Lian et al. 2017).

No global collective: each step every rank mixes its parameters with its neighbours'
on a fixed topology (``--topology ring|torus|hypercube|exponential``) with
Metropolis–Hastings weights W (``comm.topology``), then applies its own gradient,
computed at its pre-mixing parameters:

    x_i ← Σ_j W_ij x_j − η g_i(x_i)

The disagreement between ranks contracts by the consensus rate max(|λ2|, |λn|) of W
per round. The mean of the x_i is what is evaluated and saved.
"""

from __future__ import annotations

import numpy as np

from . import register
from .base import Algorithm

__all__ = ["Gossip"]


@register("gossip")
class Gossip(Algorithm):
    accepts_hogwild = True
    replicated = False

    def __init__(self, ctx):
        from ..comm import topology

        super().__init__(ctx)
        self.topology = self.cfg.topology
        graph = topology.build(self.topology, self.size)
        self.W = topology.metropolis_hastings(graph)
        self.neighbors = graph[self.rank]
        self.rate = topology.consensus_rate(self.W)
        self._scratch = [np.empty(self.npar, dtype=self.params.dtype) for _ in self.neighbors]

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        if self.size > 1:
            self.coll.gossip_round(self.params, self.W, self.neighbors, self._scratch)
        self.local_update(count, lr)
        return self.control_point(step, stop, self.cfg.control_every)

    def consensus(self):
        return self.average_params()

    def disagreement(self):
        return self._relative_spread()

    def describe(self):
        from ..comm import topology

        return (f"gossip D-PSGD on a {topology.describe(self.topology, self.size, self.W)}; "
                f"{len(self.neighbors)} neighbour(s) on this rank")
