"""Optimizers and learning-rate schedules on the flat parameter buffer (in place)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "lr_at"]


class SGD:
    """SGD with optional (heavy-ball or Nesterov) momentum, updating ``params`` in place.

    v ← μ·v + g;  w ← w − lr·v   (Nesterov: w ← w − lr·(g + μ·v)).
    Every rank that applies the same gradients to the same parameters gets the
    same bits, so data-parallel replicas never drift.
    """

    def __init__(self, params: np.ndarray, momentum: float = 0.0, nesterov: bool = False):
        self.params = params
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocity = np.zeros_like(params) if momentum else None
        self._update = np.empty_like(params)  # scratch: no allocation per step

    def step(self, grad: np.ndarray, lr: float) -> None:
        """Apply one update with gradient ``grad`` (not modified) and learning rate ``lr``."""
        lr = self.params.dtype.type(lr)
        upd = self._update
        if self.velocity is None:
            np.multiply(grad, lr, out=upd)
        else:
            mu = self.params.dtype.type(self.momentum)
            v = self.velocity
            v *= mu
            v += grad
            if self.nesterov:
                np.multiply(v, mu, out=upd)
                upd += grad
                upd *= lr
            else:
                np.multiply(v, lr, out=upd)
        self.params -= upd


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str = "cosine",
          warmup_steps: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``: linear warm-up, then
    ``constant`` or ``cosine`` decay towards 0 at the last step."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        t = min(step - warmup_steps, span) / span
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (constant, cosine)")
