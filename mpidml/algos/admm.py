"""``admm``: consensus ADMM (Boyd et al. 2011, §7.1) for the convex models (logreg, softmax, lsq).

The objective F(w) = Σ_i (n_i/n)·L_i(w) + (l2/2)‖W‖² (L_i: mean loss over rank i's n_i
rows, W: the regularised weights, biases exempt) is split as Σ_i f_i(x_i) + g(z) with
the constraints x_i = z. Rank i keeps its local model x_i (the ordinary parameter
buffer) and a scaled dual u_i; z, the consensus, is kept identical on every rank.
Rank i's penalty is ρ_i = ρ·n_i/n (``--admm-rho`` = ρ, in units of the mean loss), so
its local subproblem, divided by n_i/n, reads

    x_i ← argmin_x  L_i(x) + (ρ/2)‖x − z + u_i‖²

and is solved approximately by ``--tau`` of the rank's ordinary minibatch steps with the
gradient (mean minibatch gradient of L_i) + ρ(x − z + u_i), as plain SGD steps warm-started
from the previous x_i (``--algo admm`` sets ``--optimizer sgd``: a momentum buffer carries a
stale velocity across the changing subproblems, and measured at momentum 0.9, τ = 4, p = 3 the
inexact solves made the dual updates diverge; even with the buffer reset every round). Then one mpidml allreduce of
``[n_i·(x_i + u_i) | n_i | control]`` gives v = Σ_i (n_i/n)(x_i + u_i) and

    z ← argmin_z g(z) + Σ_i (ρ_i/2)‖x_i − z + u_i‖²  =  v·ρ/(ρ + l2) on W,  v on the biases
    u_i ← u_i + x_i − z

**Where the L2 term goes**: only into the z-update (g), as the closed-form shrinkage
ρ/(ρ + l2); the local subproblems see the data loss and the proximal term, never the
regulariser. At a fixed point (x_i = z) the local optimality conditions
(n_i/n)·∇L_i(z) = −ρ_i·u_i, summed, and the z-update's l2·Z = Σ_i ρ_i·u_i give
∇L(z) + l2·Z = 0: z minimises F. A rank without rows has ρ_i = 0 and weight 0 in v.

z is the model that is evaluated and saved (``consensus()``); ``disagreement()`` is the
relative primal residual max_i ‖x_i − x̄‖/‖x̄‖.

Checkpoints: z is the shared ``params``; per rank x_i, its optimizer buffers and u_i
(``dual``). Elastic resume (another rank count): the rows — hence the f_i — change
owner, so every rank restarts from x_i = z with u_i = 0 (ADMM converges from any
dual; the optimizer buffers are averaged as for every per-rank algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import knob
from . import register
from .base import CONTROL_SIZE, Algorithm, fixed_rows

__all__ = ["ADMM", "ADMM_MODELS"]

#: models whose objective is convex (ADMM's guarantees need it)
ADMM_MODELS = ("logreg", "softmax", "lsq")


@dataclass
class ADMMConfig:
    admm_rho: float = knob(0.3, "admm: penalty rho of x_i = z, in units of the mean loss (local subproblem "
                                "L_i(x) + rho/2 |x - z + u_i|^2, solved by --tau minibatch steps)")

    def validate(self) -> None:
        if not self.admm_rho > 0:
            raise ValueError(f"--admm-rho must be > 0, got {self.admm_rho}")


@register("admm", config=ADMMConfig)
class ADMM(Algorithm):
    @classmethod
    def check_config(cls, cfg):
        if cfg.model not in ADMM_MODELS:
            raise ValueError(f"--algo admm needs a convex --model ({', '.join(ADMM_MODELS)}), not {cfg.model}")
        fixed_rows(cfg)

    @classmethod
    def optimizer_name(cls, cfg):
        return "sgd"       # local proximal steps are plain SGD (see the module docstring)
    replicated = False
    consensus_kind = "the consensus z"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.tau = int(self.cfg.tau)
        self.rho = float(self.cfg.admm_rho)
        # n_i: the z-update's weight (fixed: the rank's rows, not the samples of a round)
        self.rows = float(ctx.rows) if ctx.rows is not None else 1.0
        self.z = self.params.copy()                     # z starts at the common initial model
        self.u = np.zeros_like(self.params)
        self._prox = np.zeros_like(self.params)
        self._buf = np.zeros(self.npar + 1 + CONTROL_SIZE, dtype=self.params.dtype)

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        g = self.grad
        if count > 0:
            g *= g.dtype.type(1.0 / count)
        else:
            g[:] = 0                   # no rows: f_i = 0, only the proximal term pulls
        from ..kernels._common import add_scaled

        np.subtract(self.params, self.z, out=self._prox)
        self._prox += self.u
        add_scaled(g, self._prox, g.dtype.type(self.rho))
        self.opt.step(g, lr)
        if (step + 1) % self.tau:
            return None
        n, buf = self.npar, self._buf
        np.add(self.params, self.u, out=buf[:n])
        buf[:n] *= buf.dtype.type(self.rows)
        buf[n] = self.rows
        self.control.pack(buf[n + 1:], stop)
        self.coll.allreduce(buf)
        out = self.control.settle(buf[n + 1:], step)
        if buf[n] > 0:
            np.multiply(buf[:n], buf.dtype.type(1.0 / buf[n]), out=self.z)
            shrink = self.z.dtype.type(self.rho / (self.rho + self.model.l2))
            for s in self.model._weight_slices:
                self.z[s] *= shrink
        self.u += self.params
        self.u -= self.z
        return out

    def consensus(self):
        return self.z

    def disagreement(self):
        return self._relative_spread()

    def extra_rank_state(self):
        return {"dual": self.u}

    def load_extra(self, shared, mine):
        self.z[:] = shared["params"]
        if mine is not None:
            self.u[:] = mine["dual"]
        else:
            self.u[:] = 0

    def describe(self):
        return f"consensus ADMM (rho {self.rho:g}, z-update every {self.tau} local steps)"
