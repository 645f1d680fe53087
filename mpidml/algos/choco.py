"""``choco``: CHOCO-SGD, decentralized SGD with compressed gossip (Koloskova et al. 2019).

Each rank keeps x_i, a public copy x̂_i that every neighbour can reconstruct, and
s_i = Σ_j W_ij x̂_j (itself included). Per step:

    x_i ← x_i − η g_i                      (local optimizer step)
    q_i = Q(x_i − x̂_i)                     (``--compress topk|qsgd``; top-k without
                                             error feedback: x̂ is the memory)
    send q_i to the neighbours, receive q_j
    x̂_i += q_i;  s_i += Σ_j W_ij q_j (j ∈ neighbours ∪ {i})
    x_i ← x_i + γ (s_i − x̂_i)             (γ = ``--choco-gamma``)

Only the compressed q travels (bytes counted exactly). The mean of the x_i is
evaluated and saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import knob
from . import register
from .base import Algorithm

__all__ = ["Choco"]


@dataclass
class ChocoConfig:
    choco_gamma: float = knob(0.5, "choco: consensus step size")

    def validate(self) -> None:
        if not 0 < self.choco_gamma <= 1:
            raise ValueError(f"--choco-gamma must be in (0, 1], got {self.choco_gamma}")


@register("choco", config=ChocoConfig)
class Choco(Algorithm):
    accepts_compression = True

    @classmethod
    def check_config(cls, cfg):
        if cfg.compress not in ("topk", "qsgd"):
            raise ValueError("--algo choco needs --compress topk or qsgd")
    replicated = False

    def __init__(self, ctx):
        from ..comm import topology
        from ..comm.codecs import make_codec, packed_size

        super().__init__(ctx)
        cfg = self.cfg
        graph = topology.build(cfg.topology, self.size)
        self.W = topology.metropolis_hastings(graph)
        self.neighbors = graph[self.rank]
        self.gamma = float(cfg.choco_gamma)
        kind = cfg.compress if cfg.compress not in (None, "none") else "topk"
        self.kind = kind
        self.codec = make_codec(kind, self.npar, np.float64, ratio=cfg.topk_ratio, levels=cfg.qsgd_levels,
                                seed=cfg.seed * 7919 + self.rank, error_feedback=False)
        self.x_hat = np.zeros(self.npar, dtype=np.float64)
        self.s = np.zeros(self.npar, dtype=np.float64)
        nbytes = packed_size(self.codec, self.npar)
        self._send = np.empty(nbytes, dtype=np.uint8)
        self._recv = [np.empty(nbytes, dtype=np.uint8) for _ in self.neighbors]
        self._q = np.zeros(self.npar, dtype=np.float64)

    def step(self, step, loss, count, lr, stop):
        from ..comm.codecs import pack, unpack

        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)
        if self.size > 1:
            payload = self.codec.encode(self.params - self.x_hat)
            pack(self.codec, payload, self.npar, out=self._send)
            self.coll.neighbor_exchange(self._send, self.neighbors, self._recv)
            q = self._q
            q[:] = 0
            self.codec.decode_add(payload, q)
            self.x_hat += q
            self.s += self.W[self.rank, self.rank] * q
            for j, buf in zip(self.neighbors, self._recv):
                q[:] = 0
                self.codec.decode_add(unpack(self.codec, buf, self.npar), q)
                self.s += self.W[self.rank, j] * q
            self.params += (self.gamma * (self.s - self.x_hat)).astype(self.params.dtype)
        return self.control_point(step, stop, self.cfg.control_every)

    def consensus(self):
        return self.average_params()

    def disagreement(self):
        return self._relative_spread()

    def extra_rank_state(self):
        return {"choco_x_hat": self.x_hat, "choco_s": self.s}

    def load_extra(self, shared, mine):
        if mine is not None:
            self.x_hat[:] = mine["choco_x_hat"]
            self.s[:] = mine["choco_s"]
        else:   # elastic: the neighbourhoods changed, so the public copies restart
            self.x_hat[:] = 0
            self.s[:] = 0

    def describe(self):
        what = f"top-{self.cfg.topk_ratio:g}" if self.kind == "topk" else self.kind
        from ..comm import topology

        return (f"CHOCO-SGD, {what} compressed gossip, gamma {self.gamma:g}, on a "
                f"{topology.describe(self.cfg.topology, self.size, self.W)}")
