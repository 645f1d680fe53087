"""``sync``: bulk-synchronous data parallel SGD (BSP), optionally with compressed gradients.

Uncompressed, every step is ONE allreduce of the fused buffer
``[gradient sums | loss | count | stop | NaN]`` (``coll.allreduce``: the measured auto
policy — native MPI for the small buffers of the default models, shm above 64 KiB): the step's gradient is the exact
sample-weighted mean over the global batch and every rank applies the identical
update, so the replicas stay bit-identical.

Compressed (``--compress topk|qsgd|fp16``): the gradient sums are *reduced* in
compressed form (``coll.reduce_sum``, comm/compressed.py), so the bytes per rank do
not grow linearly with p:

* fp16: one ring reduce-scatter of fp16 segments (fp32 accumulation) + fp16 allgather,
  with the control slots ``[loss, count, stop, NaN]`` summed in the same messages (in the
  parameters' dtype, as in the uncompressed fused buffer): one exchange per step, about half
  the bytes of the fp32 allreduce;
* qsgd: int8 levels reduced by segment, the sums re-quantised and allgathered;
* topk: sparse reduce-scatter by index range or payload allgather, whichever moves
  fewer bytes. With ``--optimizer momentum|nesterov`` the momentum is applied on each
  rank *before* compression, with the residual (DGC's momentum correction and momentum
  factor masking, Lin et al. 2018; ``codecs.TopK``), and the summed update is applied
  with plain SGD: momentum on the aggregated sparse gradient diverged at the default
  lr (issue 24).

qsgd and topk send a 32-byte control allreduce first. Top-k keeps an error-feedback
residual per rank (Stich 2018; Karimireddy 2019), QSGD is unbiased. Every rank decodes
the same bytes, so the replicas still stay identical.
"""

from __future__ import annotations

import numpy as np

from . import register
from .base import CONTROL_SIZE, Algorithm

__all__ = ["Sync"]


@register("sync")
class Sync(Algorithm):
    accepts_compression = True
    survives_failures = True

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = self.cfg
        self.codec = None
        if getattr(cfg, "compress", "none") not in (None, "none"):
            from ..comm.codecs import make_codec

            self.codec = make_codec(cfg.compress, self.npar, self.params.dtype, ratio=cfg.topk_ratio,
                                    levels=cfg.qsgd_levels, seed=cfg.seed * 7919 + self.rank,
                                    momentum=self._topk_momentum(cfg),
                                    nesterov=cfg.optimizer == "nesterov")
            self._sum = np.zeros(self.npar, dtype=self.params.dtype)
            # fp16: the control slots ride in the same messages, in the parameters' dtype as
            # in the uncompressed fused buffer (float64 slots cost 0.58x sync's bytes at p = 4)
            self._tail = np.zeros(CONTROL_SIZE, dtype=self.params.dtype)
            self._exchanges: dict[str, int] = {}                      # topk: steps per exchange run
        else:
            self._buf = np.zeros(self.npar + CONTROL_SIZE, dtype=self.params.dtype)
            self.grad = self._buf[:self.npar]   # gradients are computed straight into the fused buffer

    @staticmethod
    def _topk_momentum(cfg) -> float:
        """The momentum top-k applies before compression (DGC), 0 for other codecs."""
        if cfg.compress == "topk" and cfg.optimizer in ("momentum", "nesterov"):
            return float(cfg.momentum)
        return 0.0

    @classmethod
    def optimizer_name(cls, cfg) -> str:
        # top-k with momentum: the codec keeps the velocity (momentum correction), so the
        # optimizer applies the summed sparse update with plain SGD
        return "sgd" if cls._topk_momentum(cfg) else cfg.optimizer

    def step(self, step, loss, count, lr, stop):
        self.control.note(step, loss, count, self.grad)
        if self.codec is None:
            self.control.pack(self._buf[self.npar:], stop)
            self.coll.allreduce(self._buf)
            out = self.control.settle(self._buf[self.npar:], step)
            g = self.grad
        elif self.codec.name == "fp16":
            self.control.pack(self._tail, stop)
            g = self.coll.reduce_sum(self.codec, self.grad, self._sum, tail=self._tail)
            out = self.control.settle(self._tail, step)
            if not np.isfinite(g).all():      # the same bits on every rank: all raise together
                from ..runtime.errors import MpidmlError

                raise MpidmlError(f"--compress fp16: the summed gradient of step {step} overflows float16 "
                                  f"(|sum| > 65504); use a smaller --batch-size or another --compress")
        else:
            out = self.control.exchange(step, stop)
            if self.codec.name == "topk":
                self._exchanges[self.codec.exchange] = self._exchanges.get(self.codec.exchange, 0) + 1
            g = self.coll.reduce_sum(self.codec, self.grad, self._sum)
        self.apply_mean(g, out.count, lr)   # out.count is the same on every rank: all update or none
        return out

    def extra_rank_state(self):
        if self.codec is not None and hasattr(self.codec, "state"):
            return self.codec.state()
        return {}

    def load_extra(self, shared, mine):
        if mine is not None and self.codec is not None and hasattr(self.codec, "state"):
            for key, arr in self.codec.state().items():
                if key in mine:
                    arr[:] = mine[key]

    def report(self):
        if self.codec is not None and self.codec.name == "topk":
            return {"topk_k": self.codec.k, "topk_exchanges": dict(self._exchanges)}
        return {}

    def describe(self):
        if self.codec is None:
            return f"sync (allreduce every step, {self.coll.impl})"
        extra = f" {self.cfg.topk_ratio:g} (k = {self.codec.k})" if self.cfg.compress == "topk" else ""
        how = {"fp16": "fp16 ring reduction", "qsgd": "reduce-scatter + re-quantised allgather",
               "topk": "sparse reduction or allgather, fewer bytes"}[self.cfg.compress]
        mom = self._topk_momentum(self.cfg)
        dgc = f"; momentum {mom:g} applied before compression (DGC)" if mom else ""
        return f"sync, {self.cfg.compress}{extra}-compressed gradients ({how}{dgc})"
