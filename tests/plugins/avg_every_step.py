"""A user's own algorithm, written as one file against the public API only: every rank
takes an SGD step on its own gradient, then the ranks average their models — every step.
(With plain SGD this is sync training up to rounding; it exists to show that a new
algorithm needs no edit anywhere in mpidml.)"""

import numpy as np

from mpidml import Algorithm, register
from mpidml.comm.control import CONTROL


@register("avg_every_step")
class AverageEveryStep(Algorithm):
    consensus_kind = "the averaged model"

    def __init__(self, ctx):
        super().__init__(ctx)
        self._buf = np.zeros(self.npar + CONTROL.size, dtype=self.params.dtype)

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)                 # this rank's own step
        n = self.npar
        self._buf[:n] = self.params
        self.control.pack(self._buf[n:], stop)       # loss, count, stop and NaN ride along
        self.coll.allreduce(self._buf)               # the run's measured allreduce
        out = self.control.settle(self._buf[n:], step)
        self.params[:] = self._buf[:n] / self.params.dtype.type(self.size)
        return out

    def describe(self):
        return "average the models every step (a plug-in)"
