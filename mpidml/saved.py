"""Saved models: ``--save-model FILE.h5`` writes one, ``python -m mpidml.evaluate`` and
``python -m mpidml.predict`` read it.

Layout: dataset ``/params`` (the flat parameter buffer, dtype kept) and attributes
``format``, ``mpidml_version``, ``model`` (JSON: kind, d, classes, hidden, dtype),
``config`` (JSON: the training configuration) and ``metrics`` (JSON: the final
summary numbers). Written atomically by rank 0.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from . import __version__
from .runtime.atomic import atomic_path
from .runtime.errors import MpidmlError

__all__ = ["save_model", "load_model", "predict", "predict_proba"]

FORMAT = 1


def save_model(path: str, desc: dict, params: np.ndarray, config: dict, metrics: dict) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("params", data=params)
            f.attrs["format"] = FORMAT
            f.attrs["mpidml_version"] = __version__
            f.attrs["model"] = json.dumps(desc)
            f.attrs["config"] = json.dumps(config, default=str)
            f.attrs["metrics"] = json.dumps(metrics, default=str)


def load_model(path: str):
    """(model object, params, description, attrs) of a saved model; MpidmlError if it is not one."""
    from .models import make_model

    try:
        with h5py.File(path, "r", locking=False) as f:
            if f.attrs.get("format") != FORMAT or "params" not in f:
                raise MpidmlError(f"{path}: not an mpidml saved model (written by --save-model)")
            params = f["params"][()]
            desc = json.loads(f.attrs["model"])
            meta = {k: json.loads(f.attrs[k]) for k in ("config", "metrics")}
    except OSError as exc:
        raise MpidmlError(f"{path}: cannot read the model ({exc})") from None
    hidden = tuple(int(h) for h in desc.get("hidden", "").split(",") if h) or (256, 128)
    model = make_model(desc["kind"], desc["d"], desc.get("classes", 2), np.dtype(desc["dtype"]),
                       meta["config"].get("l2", 0.0), hidden)
    if model.nparams != params.size:
        raise MpidmlError(f"{path}: {params.size} parameters, but a {desc['kind']} model of this shape has "
                          f"{model.nparams}")
    return model, params, desc, meta


def _matmul(X, W):
    """X @ W for dense X or a CSRMatrix (through scipy.sparse)."""
    if isinstance(X, np.ndarray):
        return X @ W
    from scipy.sparse import csr_matrix

    return csr_matrix((X.data, X.indices, X.indptr), shape=X.shape) @ W


def _margins(X, w: np.ndarray) -> np.ndarray:
    """X @ w row by row with a kernel loop: a row's value does not depend on how the rows
    are split between ranks (BLAS gemv's does, by alignment)."""
    from .kernels.logreg import logreg_partial_margins_csr, logreg_partial_margins_dense

    rows = np.arange(X.shape[0], dtype=np.int64)
    z = np.empty(X.shape[0], dtype=w.dtype)
    if isinstance(X, np.ndarray):
        logreg_partial_margins_dense(X, rows, w, z)
    else:
        logreg_partial_margins_csr(X.data, X.indices, X.indptr, rows, w, z)
    return z


def _logits(kind: str, v: dict, X) -> np.ndarray:
    """(n, K) class scores of a softmax or MLP model."""
    if kind == "softmax":
        return _matmul(X, v["weight"]) + v["bias"]
    if kind == "mlp":
        layers = len([k for k in v if k.startswith("W")])
        Z = X
        for l in range(layers):
            Z = (_matmul(Z, v[f"W{l}"]) if l == 0 else Z @ v[f"W{l}"]) + v[f"b{l}"]
            if l < layers - 1:
                np.maximum(Z, 0, out=Z)
        return Z
    raise MpidmlError(f"unknown model kind {kind!r}")


def predict(kind: str, model, params: np.ndarray, X) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores) for the rows of X: class labels and P(y=1) for logreg,
    class labels and the winning class's logit for softmax/mlp, values for lsq."""
    v = model.views(params)
    if kind in ("logreg", "lsq"):
        z = _margins(X, v["weight"]) + v["bias"][0]
        if kind == "lsq":
            return z, z
        return (z > 0).astype(np.int64), 0.5 * (1.0 + np.tanh(0.5 * z))
    Z = _logits(kind, v, X)
    labels = np.argmax(Z, axis=1)
    return labels.astype(np.int64), Z[np.arange(Z.shape[0]), labels]


def predict_proba(kind: str, model, params: np.ndarray, X) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, probabilities) for the rows of X: for softmax/mlp the class and the
    (n, K) class probabilities (softmax of the scores); for logreg the class and P(y=1)
    (n,); for lsq the value and None."""
    if kind in ("logreg", "lsq"):
        pred, score = predict(kind, model, params, X)
        return pred, (None if kind == "lsq" else score)
    Z = _logits(kind, model.views(params), X)
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    return np.argmax(Z, axis=1).astype(np.int64), P
