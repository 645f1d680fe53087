"""``local_sgd``: local SGD / periodic model averaging (Zinkevich 2010; Stich 2019; Lin 2020).

Every rank takes optimizer steps on its own mean gradient; every ``--tau`` steps the
ranks replace their parameters by the sample-weighted mean of all ranks' parameters
(one allreduce of ``[count·x | count | control]``), so with τ = 1 and plain SGD
it is sync SGD up to rounding. ``--local-after S`` gives *post-local SGD* (Lin 2020):
average every step for the first S steps, then every τ. Momentum/Adam buffers stay
local (they are not averaged), as in the papers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import knob
from . import register
from .base import CONTROL_SIZE, Algorithm

__all__ = ["LocalSGD"]


@dataclass
class LocalSGDConfig:
    local_after: int = knob(0, "local_sgd: average every step for the first STEPS steps, then every --tau "
                               "(post-local SGD)", metavar="STEPS")

    def validate(self) -> None:
        if self.local_after < 0:
            raise ValueError(f"--local-after must be >= 0, got {self.local_after}")


@register("local_sgd", config=LocalSGDConfig)
class LocalSGD(Algorithm):
    accepts_hogwild = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.tau = int(self.cfg.tau)
        self.local_after = int(getattr(self.cfg, "local_after", 0))
        self.weight = 0.0        # samples this rank has trained on since the last average
        self._buf = np.zeros(self.npar + 1 + CONTROL_SIZE, dtype=self.params.dtype)

    def averages_at(self, step: int) -> bool:
        return step < self.local_after or (step + 1) % self.tau == 0

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)
        self.weight += count
        if not self.averages_at(step):
            return None
        n = self.npar
        buf = self._buf
        np.multiply(self.params, self.weight, out=buf[:n])
        buf[n] = self.weight
        self.control.pack(buf[n + 1:], stop)
        self.coll.allreduce(buf)
        out = self.control.settle(buf[n + 1:], step)
        if buf[n] > 0:
            self.params[:] = buf[:n] / buf[n]
        self.weight = 0.0
        return out

    # Between averages the replicas differ: evaluate and save their mean.
    def consensus(self):
        return self.average_params()

    def disagreement(self):
        return self._relative_spread()

    replicated = False

    def extra_rank_state(self):
        return {"weight": np.array(self.weight)}

    def load_extra(self, shared, mine):
        self.weight = float(mine["weight"]) if mine is not None else 0.0

    def describe(self):
        post = f", every step for the first {self.local_after}" if self.local_after else ""
        return f"local SGD (average every {self.tau} steps{post})"
