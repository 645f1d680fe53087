"""``sync``: bulk-synchronous data parallel SGD (BSP), optionally with compressed gradients.

Uncompressed, every step is ONE allreduce of the fused buffer
``[gradient sums | loss | count | stop | NaN]`` (``coll.allreduce``: the measured auto
policy — native MPI for the small buffers of the default models, shm above 64 KiB): the step's gradient is the exact
sample-weighted mean over the global batch and every rank applies the identical
update, so the replicas stay bit-identical.

Compressed (``--compress topk|qsgd|fp16``): a 32-byte control allreduce first (global
count, stop, NaN), then the gradient sums go through a codec and the ring
*allgather* (``coll.allgather_sum``: top-k indices differ per rank, so they
cannot be reduced). Top-k keeps an error-feedback residual per rank (Stich 2018;
Karimireddy 2019), QSGD is unbiased. Every rank decodes the same payloads in the same
order, so the replicas still stay identical.
"""

from __future__ import annotations

import numpy as np

from . import register
from .base import CONTROL_SIZE, Algorithm

__all__ = ["Sync"]


@register("sync")
class Sync(Algorithm):
    accepts_compression = True

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = self.cfg
        self.codec = None
        if getattr(cfg, "compress", "none") not in (None, "none"):
            from ..comm.codecs import make_codec

            self.codec = make_codec(cfg.compress, self.npar, self.params.dtype, ratio=cfg.topk_ratio,
                                    levels=cfg.qsgd_levels, seed=cfg.seed * 7919 + self.rank)
            self._sum = np.zeros(self.npar, dtype=self.params.dtype)
        else:
            self._buf = np.zeros(self.npar + CONTROL_SIZE, dtype=self.params.dtype)
            self.grad = self._buf[:self.npar]   # gradients are computed straight into the fused buffer

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        if self.codec is None:
            self.control.pack(self._buf[self.npar:], stop)
            self.coll.allreduce(self._buf)
            out = self.control.settle(self._buf[self.npar:], step)
            g = self.grad
        else:
            out = self.control.exchange(step, stop)
            g = self.coll.allgather_sum(self.codec, self.grad, self._sum)
        self.apply_mean(g, out.count, lr)   # out.count is the same on every rank: all update or none
        return out

    def extra_rank_state(self):
        if self.codec is not None and hasattr(self.codec, "residual"):
            return {"residual": self.codec.residual}
        return {}

    def load_extra(self, shared, mine):
        if mine is not None and "residual" in mine:
            self.codec.residual[:] = mine["residual"]

    def describe(self):
        if self.codec is None:
            return f"sync (allreduce every step, {self.coll.impl})"
        extra = f" {self.cfg.topk_ratio:g}" if self.cfg.compress == "topk" else ""
        return f"sync, {self.cfg.compress}{extra}-compressed gradients (allgather)"
