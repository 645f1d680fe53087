"""``easgd``: elastic averaging SGD (Zhang, Choromanska & LeCun 2015), synchronous.

Every rank (worker) keeps its own parameters x_i and takes optimizer steps on its own
mean gradient; every ``--tau`` steps the workers meet the centre variable x̃ (kept,
identical, on every rank):

    d_i = α (x_i − x̃);   x_i ← x_i − d_i;   x̃ ← x̃ + Σ_i d_i = x̃ + α (Σ_i x_i − p x̃)

— one allreduce of ``[x_i | control]`` per meeting. α = β/p with β =
``--easgd-beta`` (0.9, the paper's choice) unless ``--easgd-alpha`` is given. α = 0
leaves the workers independent. EAMSGD is the same with momentum on the local steps
(``--algo eamsgd`` = easgd with Nesterov momentum 0.99 unless --momentum is set).
The centre x̃ is the model that is evaluated and saved.

The asynchronous variant, where each worker meets the centre at its own pace, is
``easgd_async`` (``algos/easgd_async.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import knob
from . import register
from .base import CONTROL_SIZE, Algorithm

__all__ = ["EASGD", "EAMSGD", "EASGDConfig", "CentreModel", "easgd_alpha"]


@dataclass
class EASGDConfig:
    """Options of easgd, eamsgd and easgd_async."""

    easgd_alpha: float | None = knob(None, "easgd: elastic moving rate alpha (default --easgd-beta / p)",
                                     kind=(float, type(None)))
    easgd_beta: float = knob(0.9, "easgd: beta = p * alpha")

    def validate(self) -> None:
        if self.easgd_alpha is not None and not 0 <= self.easgd_alpha < 1:
            raise ValueError(f"--easgd-alpha must be in [0, 1), got {self.easgd_alpha}")
        if not 0 <= self.easgd_beta < 1:
            raise ValueError(f"--easgd-beta must be in [0, 1), got {self.easgd_beta}")


def easgd_alpha(cfg, workers: int) -> float:
    """The elastic moving rate α: ``--easgd-alpha`` if set, else β / p."""
    if cfg.easgd_alpha is not None:
        return float(cfg.easgd_alpha)
    return float(cfg.easgd_beta) / max(workers, 1)


class CentreModel(Algorithm):
    """What both EASGD variants share: the centre x̃ is evaluated, saved and restored."""

    replicated = False
    consensus_kind = "the centre model"
    center: np.ndarray

    def consensus(self):
        return self.center

    def disagreement(self):
        return self._relative_spread()

    def extra_shared_state(self):
        return {"center": self.center}

    def load_extra(self, shared, mine):
        self.center[:] = shared["center"]


@register("easgd", config=EASGDConfig)
class EASGD(CentreModel):
    accepts_hogwild = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.tau = int(self.cfg.tau)
        self.alpha = easgd_alpha(self.cfg, self.size)
        self.center = self.params.copy()         # x̃ starts at the common initial model
        self._buf = np.zeros(self.npar + CONTROL_SIZE, dtype=self.params.dtype)

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        self.local_update(count, lr)
        if (step + 1) % self.tau:
            return None
        n, buf, a = self.npar, self._buf, self.alpha
        buf[:n] = self.params
        self.control.pack(buf[n:], stop)
        self.coll.allreduce(buf)
        out = self.control.settle(buf[n:], step)
        # x_i -= α (x_i − x̃)   and   x̃ += α (Σ x_i − p x̃), both from the values before the meeting
        diff = self.params - self.center
        self.params -= self.params.dtype.type(a) * diff
        self.center += (a * (buf[:n] - self.size * self.center)).astype(self.center.dtype)
        return out

    def describe(self):
        return f"EASGD (meet the centre every {self.tau} steps, alpha {self.alpha:g})"


@register("eamsgd", config=EASGDConfig)
class EAMSGD(EASGD):
    """EASGD with Nesterov momentum on the local steps (the paper's EAMSGD)."""

    accepts_hogwild = False

    @classmethod
    def optimizer_name(cls, cfg) -> str:
        return "nesterov"
