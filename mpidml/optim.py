"""Optimizers and learning-rate schedules on the flat parameter buffer (in place).

Every optimizer updates ``params`` in place from a gradient ``grad`` (never
modified) with numpy ufuncs writing into preallocated scratch, so a step allocates
nothing, and ranks that apply the same gradients to the same parameters get the
same bits (data-parallel replicas never drift).

Weight decay here is *decoupled* (Loshchilov & Hutter 2019): w ← w − lr·wd·w is
applied besides the gradient step, unlike the models' ``l2`` term, which is part of
the objective and enters the gradient.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "Adam", "make_optimizer", "OPTIMIZERS", "lr_at", "SCHEDULES", "scaled_lr"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "cosine", "step")


class SGD:
    """SGD with optional (heavy-ball or Nesterov) momentum, updating ``params`` in place.

    v ← μ·v + g;  w ← w − lr·v   (Nesterov: w ← w − lr·(g + μ·v));
    with ``weight_decay`` wd additionally w ← w − lr·wd·w (using w before the step).
    """

    def __init__(self, params: np.ndarray, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.params = params
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.velocity = np.zeros_like(params) if momentum else None
        self._update = np.empty_like(params)  # scratch: no allocation per step

    def state(self) -> dict[str, np.ndarray]:
        """Arrays a checkpoint must keep to continue bit for bit."""
        return {} if self.velocity is None else {"velocity": self.velocity}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if self.velocity is not None:
            self.velocity[:] = state["velocity"]

    def step(self, grad: np.ndarray, lr: float) -> None:
        """Apply one update with gradient ``grad`` (not modified) and learning rate ``lr``."""
        t = self.params.dtype.type
        lr = t(lr)
        upd = self._update
        if self.velocity is None:
            np.multiply(grad, lr, out=upd)
        else:
            mu = t(self.momentum)
            v = self.velocity
            v *= mu
            v += grad
            if self.nesterov:
                np.multiply(v, mu, out=upd)
                upd += grad
                upd *= lr
            else:
                np.multiply(v, lr, out=upd)
        if self.weight_decay:
            self.params *= t(1.0 - float(lr) * self.weight_decay)
        self.params -= upd


class Adam:
    """Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW when wd > 0).

    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  m̂ = m/(1−β1ᵗ);  v̂ = v/(1−β2ᵗ);
    w ← w − lr·wd·w − lr·m̂/(√v̂ + ε).
    """

    def __init__(self, params: np.ndarray, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = params
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.t = 0
        self._tmp = np.empty_like(params)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays a checkpoint must keep to continue bit for bit."""
        return {"adam_m": self.m, "adam_v": self.v, "adam_t": np.array(self.t, dtype=np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.m[:] = state["adam_m"]
        self.v[:] = state["adam_v"]
        self.t = int(state["adam_t"])

    def step(self, grad: np.ndarray, lr: float) -> None:
        """Apply one update with gradient ``grad`` (not modified) and learning rate ``lr``."""
        ty = self.params.dtype.type
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        tmp, m, v = self._tmp, self.m, self.v
        m *= ty(b1)
        np.multiply(grad, ty(1.0 - b1), out=tmp)
        m += tmp
        v *= ty(b2)
        np.multiply(grad, grad, out=tmp)
        tmp *= ty(1.0 - b2)
        v += tmp
        bc1 = 1.0 - b1 ** self.t
        bc2 = 1.0 - b2 ** self.t
        np.sqrt(v, out=tmp)
        tmp *= ty(1.0 / math.sqrt(bc2))
        tmp += ty(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= ty(lr / bc1)
        if self.weight_decay:
            self.params *= ty(1.0 - lr * self.weight_decay)
        self.params -= tmp


def make_optimizer(name: str, params: np.ndarray, momentum: float = 0.9,
                   weight_decay: float = 0.0):
    """``sgd`` (no momentum), ``momentum`` (heavy ball μ), ``nesterov`` or ``adam``."""
    if name == "sgd":
        return SGD(params, 0.0, weight_decay=weight_decay)
    if name == "momentum":
        return SGD(params, momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return SGD(params, momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str = "cosine",
          warmup_steps: int = 0, decay_every: int = 0, gamma: float = 0.1) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``.

    Linear warm-up from base_lr/warmup_steps to base_lr over the first ``warmup_steps``
    steps (Goyal et al. 2017), then ``constant``; ``cosine`` decay towards 0 at the last
    step; or ``step`` decay: × ``gamma`` every ``decay_every`` steps after the warm-up.
    """
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        t = min(step - warmup_steps, span) / span
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "step":
        if decay_every < 1:
            raise ValueError("the step schedule needs decay_every >= 1")
        return base_lr * gamma ** ((step - warmup_steps) // decay_every)
    raise ValueError(f"unknown learning-rate schedule {schedule!r} ({', '.join(SCHEDULES)})")


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int = 256) -> float:
    """Linear scaling rule (Goyal et al. 2017): lr = base_lr · global_batch / reference_batch."""
    if global_batch < 1 or reference_batch < 1:
        raise ValueError("batch sizes must be >= 1")
    return base_lr * global_batch / reference_batch
