"""``TorchModel``: a PyTorch ``nn.Module`` as an ``mpidml.Model``, so every mpidml algorithm
(sync with compression, local SGD, EASGD, gossip, push-sum, CHOCO, the parameter server,
ADMM, ...) trains it.

Example (every rank runs it: ``mpiexec -n 4 python job.py``)::

    import torch
    import mpidml
    from mpidml.adapters.torch import TorchModel

    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = TorchModel(net, torch.nn.CrossEntropyLoss(reduction="sum"), l2=1e-4)
    result = mpidml.fit(model, data="digits.h5", algo="local_sgd", tau=8, epochs=5)
    trained = model.to_module(result.params)     # the consensus parameters, in the module

Zero copy, one buffer: the module's parameters become views of the flat parameter
vector the algorithm owns (``torch.from_numpy``), and their ``.grad`` views of the
gradient buffer the engine passes, so autograd's backward writes the summed gradient
straight where the collectives read it (tensor fusion for free). The views are re-pointed
only when the engine passes another buffer (e.g. the evaluator's), a few microseconds.

Requires torch (``pip install 'mpidml[torch]'``); nothing else in mpidml imports it.
CPU only. Only parameters are trained and exchanged: module buffers (BatchNorm running
statistics) stay per rank, and ``module.train()`` / ``.eval()`` is left to the caller.
"""

from __future__ import annotations

import math

import numpy as np

from ..models import Model

__all__ = ["TorchModel"]

_LABEL_MODES = ("classes", "binary", "real")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("mpidml.adapters.torch needs PyTorch: pip install 'mpidml[torch]' "
                          "(or pip install torch)") from None
    return torch


class TorchModel(Model):
    """A ``torch.nn.Module`` and a loss as an ``mpidml.Model`` over one flat buffer.

    Args:
        module: the network; called as ``module(x)`` on a float tensor of a minibatch's
            rows (shape ``(rows, *input_shape)``); all parameters of one floating dtype
            (that is the model's ``dtype``), on the CPU.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``, e.g.
            ``torch.nn.CrossEntropyLoss(reduction="sum")``. A loss with
            ``reduction="mean"`` is multiplied by the row count (mpidml wants the SUM over
            rows), ``reduction="none"`` is summed; a plain function must return the sum.
        label_mode: ``"classes"`` (targets: int64 class indices 0..K-1), ``"binary"``
            (float 0/1 of the outputs' shape, e.g. for ``BCEWithLogitsLoss``) or ``"real"``
            (float values of the outputs' shape); default: the class attribute
            (``"classes"``; a subclass used with ``--model module:Class`` sets it there,
            because the loader reads it before ``build``).
        metric: ``"accuracy"`` (arg-max for classes, output > 0 for binary) or ``"rmse"``;
            default: accuracy, rmse for real labels.
        l2: the L2 term (l2/2)·Σ‖W‖² inside the objective, over the parameters with more
            than one dimension (weights; biases exempt, as mpidml's own models do).
        input_shape: reshape each row of ``/X`` to this before the module (e.g.
            ``(1, 8, 8)`` for a CNN on 8×8 images stored as 64 features).
        reset: True (default): ``init_params(seed)`` re-initialises every submodule that
            has ``reset_parameters`` under ``torch.manual_seed(seed)`` — the same bits on
            every rank; False: start from the module's parameters as given (then they
            must be identical on every rank, e.g. loaded from one file).

    Raises:
        ValueError / TypeError: a bad argument, naming it; ``TypeError`` for CSR data
        (the adapter takes dense ``/X``).
    """

    label_mode = "classes"      # the class attribute is what --model reads before building:
    metric_name = "accuracy"    # a subclass for other labels sets it (label_mode = "binary")

    def __init__(self, module, loss_fn, *, label_mode: str | None = None, metric: str | None = None,
                 l2: float = 0.0, input_shape: tuple | None = None, reset: bool = True):
        torch = _torch()
        label_mode = type(self).label_mode if label_mode is None else label_mode
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if label_mode not in _LABEL_MODES:
            raise ValueError(f"label_mode must be one of {', '.join(_LABEL_MODES)}, got {label_mode!r}")
        metric = metric or ("rmse" if label_mode == "real" else "accuracy")
        if metric not in ("accuracy", "rmse"):
            raise ValueError(f"metric must be 'accuracy' or 'rmse', got {metric!r}")
        self._params = [p for p in module.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("module has no trainable parameters")
        dtypes = {p.dtype for p in self._params}
        devices = {p.device.type for p in self._params}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point or devices != {"cpu"}:
            raise ValueError(f"all parameters must share one floating dtype on the CPU, got {dtypes} on {devices}")
        self._tdtype = next(iter(dtypes))
        super().__init__(torch.empty(0, dtype=self._tdtype).numpy().dtype, l2)
        self.module, self.loss_fn = module, loss_fn
        self.label_mode, self.metric_name = label_mode, metric
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.reset = bool(reset)
        self._names = [n for n, p in module.named_parameters() if p.requires_grad]
        self._shapes = [tuple(p.shape) for p in self._params]
        self._offsets = np.cumsum([0] + [p.numel() for p in self._params]).tolist()
        self.nparams = int(self._offsets[-1])
        self._weight_slices = [slice(a, b) for p, a, b in zip(self._params, self._offsets, self._offsets[1:])
                               if p.dim() > 1]
        self._bound = {"params": None, "grad": None}   # (pointer, array) each is bound to
        own = np.empty(self.nparams, self.dtype)
        self._pack(own)
        self._bind_params(own)          # from now on the module's parameters view a flat buffer

    # ---- the flat buffer ------------------------------------------------------------------
    def _pack(self, out: np.ndarray) -> None:
        """Copy the module's current parameters into ``out``."""
        torch = _torch()
        with torch.no_grad():
            for p, a, b in zip(self._params, self._offsets, self._offsets[1:]):
                out[a:b] = p.detach().reshape(-1).numpy()

    def _views(self, buf: np.ndarray):
        torch = _torch()
        flat = torch.from_numpy(buf)
        return [flat[a:b].view(shape) for a, b, shape in zip(self._offsets, self._offsets[1:], self._shapes)]

    def _bind_params(self, params: np.ndarray) -> None:
        key = (params.ctypes.data, params.size)
        if self._bound["params"] is not None and self._bound["params"][0] == key:
            return
        self._check(params, "params")
        for p, v in zip(self._params, self._views(params)):
            p.data = v
        self._bound["params"] = (key, params)

    def _bind_grad(self, grad: np.ndarray) -> bool:
        """Point every ``.grad`` at ``grad`` (zeroed); False if it cannot be (dtype)."""
        if grad.dtype != self.dtype or not grad.flags.c_contiguous or not grad.flags.writeable:
            for p in self._params:
                p.grad = None
            self._bound["grad"] = None
            return False
        grad[:] = 0
        key = (grad.ctypes.data, grad.size)
        if self._bound["grad"] is None or self._bound["grad"][0] != key:
            for p, v in zip(self._params, self._views(grad)):
                p.grad = v
            self._bound["grad"] = (key, grad)
        return True

    def _check(self, buf: np.ndarray, what: str) -> None:
        if buf.dtype != self.dtype or buf.shape != (self.nparams,) or not buf.flags.c_contiguous:
            raise ValueError(f"TorchModel: {what} must be a contiguous {self.dtype} vector of {self.nparams}, "
                             f"got {buf.dtype} {buf.shape}")
        if not buf.flags.writeable:
            raise ValueError(f"TorchModel: {what} is read-only; the module's parameters must view writeable memory")

    def init_params(self, seed: int = 0) -> np.ndarray:
        """The initial flat parameters, a new array the module's parameters then view: the
        module re-initialised under ``seed`` (``reset=True``; the same bits on every rank),
        or its parameters as given (``reset=False``). Buffers bound before are untouched."""
        torch = _torch()
        out = np.empty(self.nparams, self.dtype)
        self._pack(out)
        self._bind_params(out)
        if self.reset:
            with torch.random.fork_rng(), torch.no_grad():
                torch.manual_seed(seed)
                for m in self.module.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()     # in place: into ``out``
        return out

    def views(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Named numpy views (the module's parameter names and shapes) into ``params``."""
        return {n: params[a:b].reshape(s)
                for n, a, b, s in zip(self._names, self._offsets, self._offsets[1:], self._shapes)}

    def to_module(self, params: np.ndarray):
        """The module with a copy of ``params`` (e.g. ``FitResult.params``) as its parameters."""
        own = np.array(params, dtype=self.dtype, copy=True)
        self._bind_params(own)
        return self.module

    # ---- the protocol -------------------------------------------------------------------------
    def _inputs(self, X, rows):
        from ..data.layout import CSRMatrix

        torch = _torch()
        if isinstance(X, CSRMatrix):
            raise TypeError("TorchModel takes dense /X; convert CSR data to dense rows (python -m mpidml.data "
                            "convert) or write your own mpidml.Model for sparse input")
        x = torch.from_numpy(np.ascontiguousarray(X[rows]))
        if x.dtype != self._tdtype:
            x = x.to(self._tdtype)
        return x.view(len(rows), *self.input_shape) if self.input_shape else x

    def _targets(self, y, rows, out):
        torch = _torch()
        t = torch.from_numpy(np.ascontiguousarray(y[rows]))
        if self.label_mode == "classes":
            return t.long()
        return t.to(out.dtype).view(out.shape)

    def _summed_loss(self, out, target):
        loss = self.loss_fn(out, target)
        reduction = getattr(self.loss_fn, "reduction", "sum")
        if reduction == "mean":
            loss = loss * out.shape[0]
        elif reduction == "none":
            loss = loss.sum()
        return loss

    def loss_grad_sum(self, X, y, rows, params, grad) -> float:
        """Summed loss over ``rows`` (returned); summed gradient into ``grad`` by backward."""
        self._bind_params(params)
        if len(rows) == 0:
            grad[:] = 0
            return 0.0
        direct = self._bind_grad(grad)
        x = self._inputs(X, rows)
        out = self.module(x)
        loss = self._summed_loss(out, self._targets(y, rows, out))
        loss.backward()
        if direct:
            moved = [p.grad is None or p.grad.data_ptr() != v.data_ptr()
                     for p, v in zip(self._params, self._views(grad))]
            if not any(moved):
                return float(loss.detach())
            self._bound["grad"] = None          # autograd replaced a .grad: copy below, bind afresh next call
        for p, a, b in zip(self._params, self._offsets, self._offsets[1:]):
            grad[a:b] = 0 if p.grad is None else p.grad.detach().reshape(-1).numpy()
        return float(loss.detach())

    def metric_sum(self, X, y, rows, params) -> float:
        """Correct predictions (accuracy) or squared error (rmse) summed over ``rows``."""
        torch = _torch()
        self._bind_params(params)
        if len(rows) == 0:
            return 0.0
        with torch.no_grad():
            out = self.module(self._inputs(X, rows))
            target = self._targets(y, rows, out)
            if self.metric_name == "rmse":
                return float(((out - target) ** 2).sum())
            if self.label_mode == "classes":
                return float((out.argmax(dim=1) == target).sum())
            return float(((out > 0).to(target.dtype) == target).sum())

    def predict(self, X, params) -> np.ndarray:
        """The module's outputs for every row of a dense ``X`` at ``params`` (numpy)."""
        torch = _torch()
        self._bind_params(params)
        with torch.no_grad():
            return self.module(self._inputs(X, np.arange(X.shape[0]))).numpy()

    def warm_up(self, X, y) -> None:
        """Follow the rank's thread policy (numba's thread count, set by the engine for
        this rank's share of the cores) and run one forward/backward pass."""
        import numba

        torch = _torch()
        torch.set_num_threads(max(1, numba.get_num_threads()))
        rows = np.arange(min(2, X.shape[0]), dtype=np.int64)
        params = self._bound["params"][1]
        self.loss_grad_sum(X, y, rows, params, np.empty(self.nparams, self.dtype))
        self.metric_sum(X, y, rows, params)

    def finish_metric(self, total: float, count: float) -> float:
        return math.sqrt(total / count) if self.metric_name == "rmse" else total / count
