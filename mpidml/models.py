"""Models: a kernel plus the shapes of its parameters inside one flat buffer.

Parameters live in ONE contiguous numpy array; named tensors are views into it,
so a collective moves the whole model (or gradient) in one call. Every model has
the same small interface (``Model``) and dispatches on the feature container:
a dense 2-D numpy array or a ``CSRMatrix`` (raw ``data, indices, indptr`` go to the
CSR kernels). Scratch memory the kernels need is owned by the model and allocated
once, so a training step allocates nothing.

| model | ``--model`` | labels | parameters |
| --- | --- | --- | --- |
| ``LogReg(d)`` | logreg | binary 0/1 | w (d), b |
| ``Softmax(d, K)`` | softmax | classes 0..K-1 | W (d, K), b (K) |
| ``LeastSquares(d)`` | lsq | real | w (d), b |
| ``MLP(d, K, hidden)`` | mlp | classes 0..K-1 | per layer W_l (in, out), b_l (out) |
"""

from __future__ import annotations

import math

import numpy as np

from .data.layout import CSRMatrix
from .kernels._common import add_scaled
from .kernels.hogwild import logreg_hogwild_csr
from .kernels.logreg import (
    logreg_correct_csr,
    logreg_correct_dense,
    logreg_loss_grad_csr,
    logreg_loss_grad_csr_parallel,
    logreg_loss_grad_dense,
    logreg_loss_grad_dense_parallel,
    new_scratch,
)
from .kernels.lsq import lsq_loss_grad_csr, lsq_loss_grad_dense, lsq_sq_error_csr, lsq_sq_error_dense
from .kernels.mlp import mlp_correct_csr, mlp_correct_dense, mlp_loss_grad_csr, mlp_loss_grad_dense, mlp_param_count
from .kernels.softmax import softmax_correct_csr, softmax_correct_dense, softmax_loss_grad_csr

__all__ = ["Model", "LogReg", "Softmax", "LeastSquares", "MLP", "MODELS", "MODEL_CLASSES", "make_model", "warm_up"]


class Model:
    """The model protocol every mpidml algorithm trains (public: ``mpidml.Model``).

    A model is a loss over rows and ONE flat parameter vector. Subclass this (or write
    a class with the same members) and pass it to ``mpidml.fit(model=...)`` or
    ``--model package.module:ClassName``; nothing in the package needs editing.

    Required:
        label_mode: ``"binary"`` (labels 0/1; -1/+1 mapped), ``"classes"`` (0..K-1) or
            ``"real"`` — how the loader reads and checks ``/y``.
        metric_name: ``"accuracy"`` or ``"rmse"`` (or any name; see ``finish_metric``).
        nparams: length of the flat parameter vector; ``dtype``: its numpy dtype.
        init_params(seed) -> ndarray: the initial parameters, a pure function of the
            seed (every rank must get the same bits).
        loss_grad_sum(X, y, rows, params, grad) -> float: the SUM of the data loss over
            ``rows`` (int64 indices into X, y), with the summed data gradient written
            into ``grad`` (overwritten, not accumulated). ``X`` is a dense 2-D array or
            a ``CSRMatrix``. The engine divides by the global row count.
        metric_sum(X, y, rows, params) -> float: an additive statistic over ``rows``
            (correct predictions; squared error), turned into the metric by
            ``finish_metric(total, count)``.
    Optional (this base class provides them):
        regularizer(params) / add_regularizer_grad(params, grad): the L2 term
            (l2/2)·Σ‖W‖² over ``_weight_slices`` (biases exempt);
        build(d, n_classes, dtype, l2): a classmethod making the model for data with
            ``d`` features (``--model package.module:ClassName`` calls it);
        warm_up(X, y): compile the kernels before the clock starts (default: two rows
            through loss_grad_sum and metric_sum);
        predict_margin / predict (``mpidml.predict``).

    Objective over n rows: f(θ) = (1/n) Σ_i loss_i(θ) + regularizer(θ).
    """

    @classmethod
    def build(cls, d: int, n_classes: int = 2, dtype=np.float32, l2: float = 1e-4):
        """The model for ``d`` features (override when the constructor differs)."""
        return cls(d, dtype=dtype, l2=l2)  # type: ignore[misc]  # subclasses take d first

    label_mode = "binary"      # load_shard(..., labels=label_mode)
    metric_name = "accuracy"   # or "rmse"

    def __init__(self, dtype=np.float32, l2: float = 1e-4):
        self.dtype = np.dtype(dtype)
        self.l2 = float(l2)

    nparams: int
    _weight_slices: list | tuple = ()   # the L2-regularised parts of the flat vector

    def init_params(self, seed: int = 0) -> np.ndarray:
        """Initial parameters, a pure function of ``seed`` (identical on every rank)."""
        return np.zeros(self.nparams, dtype=self.dtype)

    def views(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Named views into the flat parameter (or gradient) buffer."""
        raise NotImplementedError

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        """Summed data loss over ``rows`` (returned) and summed gradient into ``grad``."""
        raise NotImplementedError

    def metric_sum(self, X, y, rows, params) -> float:
        """Additive evaluation statistic over ``rows`` (correct count, or squared error)."""
        raise NotImplementedError

    def finish_metric(self, total: float, count: float) -> float:
        """Turn the global ``metric_sum`` over ``count`` rows into the reported metric."""
        if self.metric_name == "rmse":
            return math.sqrt(total / count)
        return total / count

    def params_of_columns(self, cols: np.ndarray) -> np.ndarray | None:
        """The sorted parameter indices a minibatch touching feature columns ``cols``
        (sorted) reads and whose data gradient can be nonzero; None when every parameter
        is (hidden layers). Lets a parameter server move only those (sparse push/pull)."""
        return None

    def regularizer(self, params) -> float:
        return 0.5 * self.l2 * sum(float(np.dot(params[s], params[s])) for s in self._weight_slices)

    def add_regularizer_grad(self, params, grad) -> None:
        """grad[W] += l2 · W for every weight block, in place (no temporaries)."""
        if self.l2:
            a = self.dtype.type(self.l2)
            for s in self._weight_slices:
                add_scaled(grad[s], params[s], a)


class LogReg(Model):
    """L2-regularised binary logistic regression on ``d`` features (dense or CSR).

    ``parallel=True`` uses the ``prange`` kernels (one row chunk and gradient buffer
    per numba thread) for calls of at least PARALLEL_MIN_ROWS rows; smaller calls, and
    every call with ``parallel=False``, use the single-thread fused kernels. On this
    project's 2-core test machine the prange kernel at 2 threads was 1.2–1.7x faster for
    shuffled batches of 256–65,536 rows and 1.1–1.3x for consecutive rows from 1,024 on,
    but slower (9.5 against 6.5 µs) for 256 consecutive rows. ``mpidml.train`` sets it
    when a rank has more than one thread (``--threads``).
    """

    PARALLEL_MIN_ROWS = 1024

    label_mode = "binary"
    metric_name = "accuracy"

    def __init__(self, d: int, dtype=np.float32, l2: float = 1e-4, parallel: bool = False):
        super().__init__(dtype, l2)
        self.d = int(d)
        self.nparams = self.d + 1
        self._weight_slices = [slice(0, self.d)]
        self.parallel = bool(parallel)
        self._part: np.ndarray | None = None
        self._scratch = new_scratch(self.dtype)

    def init_params(self, seed: int = 0) -> np.ndarray:
        """Zero parameters (the problem is convex)."""
        return np.zeros(self.nparams, dtype=self.dtype)

    def views(self, params):
        return {"weight": params[: self.d], "bias": params[self.d:]}

    def params_of_columns(self, cols):
        return np.append(cols, self.d)          # [w (d) | b]: weight j is column j

    def _parts(self):
        if self._part is None:
            import numba
            self._part = np.empty((numba.get_num_threads(), self.nparams), self.dtype)
        return self._part

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        return self._loss_grad(X, y, rows, params, grad, self.parallel and len(rows) >= self.PARALLEL_MIN_ROWS)

    def _loss_grad(self, X, y, rows, params, grad, parallel: bool) -> float:
        if isinstance(X, CSRMatrix):
            if parallel:
                return logreg_loss_grad_csr_parallel(X.data, X.indices, X.indptr, y, rows, params, grad,
                                                     self._parts())
            return logreg_loss_grad_csr(X.data, X.indices, X.indptr, y, rows, params, grad, self._scratch)
        if parallel:
            return logreg_loss_grad_dense_parallel(X, y, rows, params, grad, self._parts())
        return logreg_loss_grad_dense(X, y, rows, params, grad, self._scratch)

    def warm_up_parallel(self, X, y, rows, params, grad) -> None:
        """Compile (or load) the prange kernel now, not at the first large batch."""
        if self.parallel:
            self._loss_grad(X, y, rows, params, grad, True)

    def sgd_pass(self, X, y, rows, params, step) -> float:
        """Per-row SGD over ``rows`` with step ``step``, updating ``params`` in place:
        a lock-free Hogwild pass on numba's threads (``kernels/hogwild.py``); CSR only.
        Returns the summed loss, each row's at the weights it read."""
        if not isinstance(X, CSRMatrix):
            raise TypeError("Hogwild passes need CSR data")
        return logreg_hogwild_csr(X.data, X.indices, X.indptr, y, rows, params, step)

    def correct(self, X, y, rows, params) -> int:
        if isinstance(X, CSRMatrix):
            return logreg_correct_csr(X.data, X.indices, X.indptr, y, rows, params)
        return logreg_correct_dense(X, y, rows, params)

    metric_sum = correct


class Softmax(Model):
    """Multinomial softmax regression with ``K`` classes on ``d`` features, L2 on W."""

    label_mode = "classes"
    metric_name = "accuracy"

    def __init__(self, d: int, K: int, dtype=np.float32, l2: float = 1e-4, batch_capacity: int = 512):
        super().__init__(dtype, l2)
        self.d, self.K = int(d), int(K)
        self.nparams = self.d * self.K + self.K
        self._weight_slices = [slice(0, self.d * self.K)]
        self._zk = np.empty(self.K)
        # Dense rows go through the MLP kernel with no hidden layer (same flat layout:
        # W (d, K) row-major, then b): two BLAS products per chunk beat the per-row
        # fused loop, whose K-wide inner loops do not vectorise (bench/kernels.py).
        self._sizes = np.array([self.d, self.K], dtype=np.int64)
        self.cap = int(batch_capacity)
        self._act = np.empty(self.cap * self.K, self.dtype)
        self._dbuf = np.empty(2 * self.cap * self.K, self.dtype)
        self._gtmp = np.empty(self.nparams, self.dtype)
        self._xb = np.empty(self.cap * self.d, self.dtype)

    def views(self, params):
        dk = self.d * self.K
        return {"weight": params[:dk].reshape(self.d, self.K), "bias": params[dk:]}

    def params_of_columns(self, cols):
        K, dk = self.K, self.d * self.K        # [W (d × K, row-major) | b (K)]
        return np.concatenate([(cols[:, None] * K + np.arange(K)).ravel(), np.arange(dk, dk + K)])

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        if isinstance(X, CSRMatrix):
            return softmax_loss_grad_csr(X.data, X.indices, X.indptr, y, rows, params, grad, self._zk)
        return mlp_loss_grad_dense(X, y, rows, params, grad, self._sizes, self._act, self._dbuf,
                                   self._gtmp, self._xb)

    def correct(self, X, y, rows, params) -> int:
        if isinstance(X, CSRMatrix):
            return softmax_correct_csr(X.data, X.indices, X.indptr, y, rows, params, self._zk)
        return softmax_correct_dense(X, y, rows, params, self._zk)

    metric_sum = correct


class LeastSquares(Model):
    """Least squares / ridge regression: ½(x·w + b − y)² per row, (l2/2)‖w‖²."""

    label_mode = "real"
    metric_name = "rmse"

    def __init__(self, d: int, dtype=np.float32, l2: float = 1e-4):
        super().__init__(dtype, l2)
        self.d = int(d)
        self.nparams = self.d + 1
        self._weight_slices = [slice(0, self.d)]
        self._scratch = new_scratch(self.dtype)   # the dense row loop is logreg's (kernels/lsq.py)

    def views(self, params):
        return {"weight": params[: self.d], "bias": params[self.d:]}

    def params_of_columns(self, cols):
        return np.append(cols, self.d)          # [w (d) | b]: weight j is column j

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        if isinstance(X, CSRMatrix):
            return lsq_loss_grad_csr(X.data, X.indices, X.indptr, y, rows, params, grad)
        return lsq_loss_grad_dense(X, y, rows, params, grad, self._scratch)

    def metric_sum(self, X, y, rows, params) -> float:
        """Σ (prediction − y)² over ``rows``."""
        if isinstance(X, CSRMatrix):
            return lsq_sq_error_csr(X.data, X.indices, X.indptr, y, rows, params)
        return lsq_sq_error_dense(X, y, rows, params)


class MLP(Model):
    """Multilayer perceptron: ``d`` inputs → ReLU layers ``hidden`` → softmax over ``K``.

    All weights and biases are views of one flat buffer, layer by layer (W_l row-major
    (in, out), then b_l). Rows are processed in chunks of ``batch_capacity`` (the size
    of the scratch activations); any minibatch size works.
    """

    label_mode = "classes"
    metric_name = "accuracy"

    def __init__(self, d: int, K: int, hidden=(256, 128), dtype=np.float32, l2: float = 1e-4,
                 batch_capacity: int = 512):
        super().__init__(dtype, l2)
        self.d, self.K = int(d), int(K)
        self.hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer widths must be >= 1, got {hidden}")
        self.sizes = np.array([self.d, *self.hidden, self.K], dtype=np.int64)
        self.nparams = mlp_param_count(self.sizes)
        self._weight_slices, self._bias_slices, off = [], [], 0
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            a, b = int(a), int(b)
            self._weight_slices.append(slice(off, off + a * b))
            self._bias_slices.append(slice(off + a * b, off + a * b + b))
            off += a * b + b
        self.cap = int(batch_capacity)
        widths = self.sizes[1:]
        self._act = np.empty(self.cap * int(widths.sum()), self.dtype)
        self._dbuf = np.empty(2 * self.cap * int(widths.max()), self.dtype)
        self._gtmp = np.empty(self.nparams, self.dtype)
        self._xb = np.empty(self.cap * self.d, self.dtype)

    def init_params(self, seed: int = 0) -> np.ndarray:
        """Random weights from ``seed`` (same on all ranks), zero biases: He-normal
        N(0, 2/fan_in) for ReLU layers, N(0, 1/fan_in) for the softmax layer (initial
        loss near log K)."""
        rng = np.random.default_rng(seed)
        params = np.zeros(self.nparams, dtype=self.dtype)
        last = len(self._weight_slices) - 1
        for l, (s, fan_in) in enumerate(zip(self._weight_slices, self.sizes[:-1])):
            gain = 1.0 if l == last else 2.0
            params[s] = rng.standard_normal(s.stop - s.start) * math.sqrt(gain / int(fan_in))
        return params

    def views(self, params):
        out = {}
        for l, (ws, bs) in enumerate(zip(self._weight_slices, self._bias_slices)):
            out[f"W{l}"] = params[ws].reshape(int(self.sizes[l]), int(self.sizes[l + 1]))
            out[f"b{l}"] = params[bs]
        return out

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        if isinstance(X, CSRMatrix):
            return mlp_loss_grad_csr(X.data, X.indices, X.indptr, y, rows, params, grad, self.sizes,
                                     self._act, self._dbuf, self._gtmp, self.cap)
        return mlp_loss_grad_dense(X, y, rows, params, grad, self.sizes, self._act, self._dbuf,
                                   self._gtmp, self._xb)

    def correct(self, X, y, rows, params) -> int:
        if isinstance(X, CSRMatrix):
            return mlp_correct_csr(X.data, X.indices, X.indptr, y, rows, params, self.sizes,
                                   self._act, self.cap)
        return mlp_correct_dense(X, y, rows, params, self.sizes, self._act, self._xb)

    metric_sum = correct


MODEL_CLASSES = {"logreg": LogReg, "softmax": Softmax, "lsq": LeastSquares, "mlp": MLP}
MODELS = tuple(MODEL_CLASSES)


def warm_up(model, X, y, hogwild: bool = False) -> None:
    """Compile (or load from numba's cache) every kernel a run of ``model`` calls, on two
    rows of ``X``. A model may define ``warm_up(X, y)`` itself (a collective model:
    kernels alone, no communication); any ``mpidml.Model``-protocol model works."""
    own = getattr(model, "warm_up", None)
    if own is not None:
        own(X, y)
        return
    rows = np.arange(min(2, X.shape[0]), dtype=np.int64)
    if hogwild:
        model.sgd_pass(X, y, rows, model.init_params(), 0.0)
    params = model.init_params()
    grad = np.empty_like(params)
    model.loss_grad_sum(X, y, rows, params, grad)
    parallel = getattr(model, "warm_up_parallel", None)
    if parallel is not None:
        parallel(X, y, rows, params, grad)
    model.metric_sum(X, y, rows, params)
    if isinstance(X, CSRMatrix):   # the parameter server's sparse pull (algos/ps.py)
        from .kernels._common import touched_columns
        touched_columns(X.indptr, X.indices, rows, np.zeros(X.shape[1], np.uint8), np.empty(X.shape[1], np.int64), 0)


def make_model(name: str, d: int, n_classes: int = 2, dtype=np.float32, l2: float = 1e-4,
               hidden=(256, 128), parallel: bool = False) -> Model:
    """The model called ``name`` (one of ``MODELS``) for ``d`` features."""
    if name == "logreg":
        return LogReg(d, dtype, l2, parallel=parallel)
    if name == "softmax":
        return Softmax(d, n_classes, dtype, l2)
    if name == "lsq":
        return LeastSquares(d, dtype, l2)
    if name == "mlp":
        return MLP(d, n_classes, hidden, dtype, l2)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
