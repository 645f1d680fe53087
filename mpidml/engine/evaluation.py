"""Full-data evaluation: the exact objective, gradient norm and test metric of a model.

One pass over every training row of every rank plus the test rows, then one
allreduce of ``[gradient sums | loss | count | metric | test count | test loss]``
(named slots, ``_Slots``). The pass goes in chunks of ``CHUNK_ROWS`` rows and beats
the watchdog after each, so a long evaluation is never mistaken for a stall
(``--stall-timeout``); the sums are float64, so chunking changes at most the last
bits of the reported objective, never the trained parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Evaluator", "Evaluation", "CHUNK_ROWS"]

#: rows per kernel call inside an evaluation pass (one heartbeat each)
CHUNK_ROWS = 8192


@dataclass
class Evaluation:
    """What every rank learns from one evaluation."""

    objective: float
    grad_norm: float
    metric: float | None       # test accuracy / RMSE, None without test rows
    test_loss: float | None


class _Slots:
    """The control slots after the gradient in the evaluation buffer."""

    LOSS, COUNT, METRIC, TEST_COUNT, TEST_LOSS = range(5)
    SIZE = 5


class Evaluator:
    """Collective evaluation of parameter vectors for one run.

    Args:
        comm: the run's communicator.
        model: the model (``mpidml.Model`` protocol).
        source: the training rows (``data.batches`` source: ``full()`` yields pieces).
        test: the test shard or None.
        allreduce: ``allreduce(buf)``, the run's sum-allreduce (every rank, same bits).
        beat: called after every chunk (the watchdog's heartbeat).
        fault: the fault plan (``slow-eval``), or None.
    """

    def __init__(self, comm, model, source, test, allreduce, beat=lambda: None, fault=None):
        self.comm, self.model, self.source, self.test = comm, model, source, test
        self._allreduce, self._beat, self._fault = allreduce, beat, fault
        self.rank = comm.Get_rank()
        npar = model.nparams
        self.npar = npar
        self.test_rows = np.arange(test.n if test is not None else 0, dtype=np.int64)
        self._buf = np.zeros(npar + _Slots.SIZE, dtype=np.float64)
        self._grad = np.zeros(npar, dtype=model.dtype)

    def _chunks(self, X, y, rows):
        for a in range(0, max(len(rows), 1), CHUNK_ROWS):
            part = rows[a:a + CHUNK_ROWS]
            if self._fault is not None:
                self._fault.evaluation_chunk(self.rank)
            yield X, y, part
            self._beat()

    def training_rows(self):
        """This rank's training rows as ``(X, y, rows)`` chunks, beating after each."""
        for X, y, rows in self.source.full():
            yield from self._chunks(X, y, rows)

    def of_params(self, params: np.ndarray) -> Evaluation:
        """Collective: the evaluation of ``params`` (identical on every rank)."""
        model, buf, g, n = self.model, self._buf, self._grad, self.npar
        s = buf[n:]
        buf[:] = 0
        for X, y, rows in self.training_rows():
            if len(rows):
                s[_Slots.LOSS] += model.loss_grad_sum(X, y, rows, params, g)
                buf[:n] += g
        s[_Slots.COUNT] = self.source.n
        test = self.test
        if test is not None and test.n:
            for X, y, rows in self._chunks(test.X, test.y, self.test_rows):
                s[_Slots.METRIC] += model.metric_sum(X, y, rows, params)
                s[_Slots.TEST_LOSS] += model.loss_grad_sum(X, y, rows, params, g)
            s[_Slots.TEST_COUNT] = test.n
        self._allreduce(buf)
        count = max(s[_Slots.COUNT], 1)
        grad = buf[:n] / count
        model.add_regularizer_grad(params, grad)
        objective = s[_Slots.LOSS] / count + model.regularizer(params)
        has_test = s[_Slots.TEST_COUNT] > 0
        metric = model.finish_metric(s[_Slots.METRIC], s[_Slots.TEST_COUNT]) if has_test else None
        test_loss = float(s[_Slots.TEST_LOSS] / s[_Slots.TEST_COUNT]) if has_test else None
        return Evaluation(float(objective), float(np.linalg.norm(grad)), metric, test_loss)
