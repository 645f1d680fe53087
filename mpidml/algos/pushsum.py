"""``pushsum``: stochastic gradient push, SGP (Assran et al. 2019).

Push-sum over the time-varying directed one-peer exponential graph: in round t rank i
sends half of its numerator x_i and weight w_i to rank i + 2^(t mod ⌈log2 p⌉) and
keeps half; the de-biased parameters z_i = x_i / w_i are where gradients are taken.
Each rank talks to ONE peer per step and nobody waits on a global collective. With
p a power of two, log2 p consecutive rounds average exactly.

The optimizer step is applied to z (x ← w·(z − η·u)), which equals SGP's x ← x − η·u
whenever w = 1 — the case on this graph, where every rank also receives exactly one
message per round.
"""

from __future__ import annotations

import numpy as np

from . import register
from .base import Algorithm

__all__ = ["PushSum"]


@register("pushsum")
class PushSum(Algorithm):
    replicated = False

    def __init__(self, ctx):
        super().__init__(ctx)
        self.w = 1.0
        self.round = 0
        self._send = np.empty(self.npar + 1, dtype=np.float64)
        self._recv = np.empty(self.npar + 1, dtype=np.float64)

    def mix(self) -> None:
        """One push-sum round on (x, w) = (w·z, w); z ← x / w afterwards."""
        from ..comm.topology import one_peer_exponential

        n = self.npar
        send, recv = self._send, self._recv
        np.multiply(self.params, 0.5 * self.w, out=send[:n])
        send[n] = 0.5 * self.w
        self.coll.shift_exchange(send, recv, one_peer_exponential(self.size, self.round))
        self.round += 1
        send += recv                               # x, w after the round
        self.w = float(send[n])
        self.params[:] = send[:n] / self.w

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)
        if self.size > 1:
            self.mix()
        return self.control_point(step, stop, self.cfg.control_every)

    def consensus(self):
        n = self.npar
        self._send[:n] = self.params * self.w
        self._send[n] = self.w
        if self.size > 1:
            self.coll.allreduce(self._send)
        if self._avg is None:
            self._avg = np.empty(n, dtype=self.params.dtype)
        self._avg[:] = self._send[:n] / self._send[n]
        return self._avg

    def disagreement(self):
        return self._relative_spread()

    def extra_rank_state(self):
        return {"pushsum_weight": np.array(self.w), "pushsum_round": np.array(self.round, dtype=np.int64)}

    def load_extra(self, shared, mine):
        if mine is not None:
            self.w = float(mine["pushsum_weight"])
            self.round = int(mine["pushsum_round"])
        else:
            self.w, self.round = 1.0, 0

    def describe(self):
        return f"push-sum SGP on the one-peer exponential graph of {self.size}"
