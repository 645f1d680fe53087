"""``python -m mpidml.train``: synchronous data-parallel training (BSP) with mpidml's ring.

Every rank runs this same program (SPMD). Per step, each rank computes the summed
loss and gradient of its part of the global minibatch with a numba kernel into one
fused buffer ``[gradient sums | loss sum | sample count]``; one ring allreduce of
that buffer gives every rank the global sums, so the step's gradient is the exact
sample-weighted mean over the global batch (uneven shards and ranks with no rows
included) and every rank applies the identical update.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import socket
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import __version__
from .models import MODELS
from .optim import OPTIMIZERS, SCHEDULES, scaled_lr

__all__ = ["TrainConfig", "train", "build_parser", "main"]

_RANK_ENV = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID")


@dataclass
class TrainConfig:
    data: str | None = None
    test: str | None = None
    cache_dir: str | None = None
    epochs: int = 5
    batch_size: int = 1024
    lr: float = 0.5
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    l2: float = 1e-4
    model: str = "logreg"
    hidden: str = "256,128"
    optimizer: str = "momentum"
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_decay_every: int = 0
    lr_gamma: float = 0.1
    lr_reference_batch: int = 0
    seed: int = 0
    metrics: str | None = None
    inject_fault: str | None = None
    quiet: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (same verdict on every rank)."""
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.l2 < 0:
            raise ValueError(f"--l2 must be >= 0, got {self.l2}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        if self.lr_schedule == "step" and self.lr_decay_every < 1:
            raise ValueError("--lr-schedule step needs --lr-decay-every >= 1")
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        self.hidden_sizes()
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.lr_reference_batch < 0:
            raise ValueError("--weight-decay, --warmup-steps and --lr-reference-batch must be >= 0")

    def hidden_sizes(self) -> tuple[int, ...]:
        """``--hidden 256,128`` as a tuple of layer widths (ValueError if malformed)."""
        try:
            sizes = tuple(int(h) for h in self.hidden.split(",") if h.strip())
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"--hidden must be comma-separated positive widths, got {self.hidden!r}")
        return sizes

    def base_lr(self) -> float:
        """--lr, linearly scaled by batch_size / lr_reference_batch when that is set (Goyal 2017)."""
        if self.lr_reference_batch:
            return scaled_lr(self.lr, self.batch_size, self.lr_reference_batch)
        return self.lr
        if self.test and not self.data:
            raise ValueError("--test needs --data (the default data set brings its own test file)")


def _launcher_rank() -> int:
    """This process's rank as told by the launcher's environment (0 if unknown), so only
    one rank prints usage errors before MPI is initialised."""
    for name in _RANK_ENV:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


class _Parser(argparse.ArgumentParser):
    def _print_message(self, message, file=None):
        if _launcher_rank() == 0:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = _Parser(
        prog="python -m mpidml.train",
        description=(
            "Synchronous data-parallel training of L2-regularised logistic regression. "
            "Run under MPI, e.g. `mpirun -n 8 python -m mpidml.train`: each rank reads only "
            "its own balanced row range of the HDF5 training file, computes gradients with a "
            "numba kernel, and the ranks average them with mpidml's ring allreduce every step. "
            "With no arguments it trains on an embedded synthetic data set (200,000 x 100 "
            "float32, generated once into the cache directory)."),
        epilog=(
            "Data layout: an HDF5 file with dataset /X (n, d) float32/float64 and /y (n,) "
            "labels 0/1. Exit status: 0 success; 1 a rank failed (all ranks aborted, message "
            "names the rank); 2 bad arguments or input (reported once by rank 0)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="FILE.h5", default=d.data,
                   help="training set (HDF5, /X and /y); default: the embedded synthetic set")
    g.add_argument("--test", metavar="FILE.h5", default=d.test,
                   help="test set for accuracy, same schema; default: the embedded set's test file "
                        "when --data is not given, otherwise none")
    g.add_argument("--cache-dir", metavar="DIR", default=d.cache_dir,
                   help="where the embedded data set is generated and cached "
                        "(default: $MPIDML_CACHE_DIR or ~/.cache/mpidml)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="GLOBAL minibatch size (summed over ranks); each rank takes its share "
                        "of every step from its own rows")
    g.add_argument("--lr", type=float, default=d.lr, help="base learning rate")
    g.add_argument("--lr-schedule", choices=list(SCHEDULES), default=d.lr_schedule,
                   help="learning-rate schedule over all steps (cosine decays to 0; step multiplies "
                        "by --lr-gamma every --lr-decay-every steps)")
    g.add_argument("--momentum", type=float, default=d.momentum,
                   help="momentum of --optimizer momentum/nesterov (0 = plain SGD)")
    g.add_argument("--l2", type=float, default=d.l2,
                   help="L2 regularisation strength on the weights (part of the objective; biases exempt)")
    g.add_argument("--model", choices=list(MODELS), default=d.model,
                   help="logreg: binary logistic (labels 0/1); softmax: multinomial logistic and "
                        "mlp: ReLU perceptron with softmax output (labels 0..K-1, K = max label + 1); "
                        "lsq: least squares / ridge (real labels, reports RMSE)")
    g.add_argument("--hidden", metavar="W1,W2,...", default=d.hidden,
                   help="hidden layer widths of --model mlp")
    g.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d.optimizer,
                   help="sgd; momentum (heavy ball, --momentum); nesterov; adam (beta 0.9/0.999)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay w -= lr*wd*w per step (AdamW-style), on all parameters")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help="linear learning-rate warm-up over the first steps")
    g.add_argument("--lr-decay-every", type=int, default=d.lr_decay_every,
                   help="steps between decays of --lr-schedule step")
    g.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="decay factor of --lr-schedule step")
    g.add_argument("--lr-reference-batch", type=int, default=d.lr_reference_batch,
                   help="linear scaling rule: use lr * batch-size / this (0 = use --lr as given)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed for the per-epoch shuffling of rows")
    g = p.add_argument_group("output and testing")
    g.add_argument("--metrics", metavar="FILE.jsonl", default=d.metrics,
                   help="write a JSON-lines log: header, one record per epoch, summary (rank 0)")
    g.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines, only the summary")
    g.add_argument("--inject-fault", metavar="raise:RANK:STEP", default=d.inject_fault,
                   help="testing aid: raise an exception on RANK at global step STEP "
                        "(the job must abort with the rank named, never hang)")
    g.add_argument("--version", action="version", version=f"mpidml {__version__}")
    return p


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()[:16]


def _warm_up_kernels(comm, model, X, y, log) -> float:
    """Compile (or load from numba's cache) the kernels: rank 0 first, so concurrent
    ranks do not race to write the cache; the others then load it. Returns seconds."""
    from .data.cache import polite_barrier

    def compile_once():
        rows = np.arange(min(2, X.shape[0]), dtype=np.int64)
        params = model.init_params()
        grad = np.empty_like(params)
        model.loss_grad_sum(X, y, rows, params, grad)
        model.metric_sum(X, y, rows, params)

    t0 = time.perf_counter()
    if comm.Get_rank() == 0:
        compile_once()
    polite_barrier(comm)
    if comm.Get_rank() != 0:
        compile_once()
    polite_barrier(comm)
    return time.perf_counter() - t0


class _Log:
    """Rank-0 output and the optional JSON-lines metrics file."""

    def __init__(self, rank: int, quiet: bool, metrics_path: str | None):
        self.rank = rank
        self.quiet = quiet
        self.fh = open(metrics_path, "w") if (metrics_path and rank == 0) else None

    def info(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(msg, flush=True)

    def always(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)

    def record(self, obj: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(obj) + "\n")
            self.fh.flush()

    def close(self) -> None:
        if self.fh:
            self.fh.close()


def train(cfg: TrainConfig, comm) -> dict:
    """Collective: run synchronous data-parallel training on ``comm``; every rank
    returns the same summary dict (final objective, test accuracy, parameters …)."""
    from .comm.ring import counters, ring_allreduce
    from .data.cache import ensure_default_dataset
    from .data.loader import load_shard, read_header
    from .data.partition import shard_rows
    from .models import MODEL_CLASSES, make_model
    from .optim import lr_at, make_optimizer
    from .runtime.errors import fail_together
    from .runtime.faults import parse_fault

    t_start = time.perf_counter()
    rank, size = comm.Get_rank(), comm.Get_size()

    def check_config():
        cfg.validate()
        return parse_fault(cfg.inject_fault)

    fault = fail_together(comm, "checking the configuration", check_config)
    if cfg.data is None:
        cfg.data, cfg.test = ensure_default_dataset(comm, cfg.cache_dir, log=_Log(rank, False, None).always)
    log = fail_together(comm, "opening the metrics file", _Log, rank, cfg.quiet, cfg.metrics)

    label_mode = MODEL_CLASSES[cfg.model].label_mode  # binary | classes | real

    def load():
        n, d, dtype = read_header(cfg.data)
        shard = load_shard(cfg.data, size, rank, labels=label_mode)
        test = None
        if cfg.test:
            nt, dt, _ = read_header(cfg.test)
            if dt != d:
                raise ValueError(f"{cfg.test}: /X has {dt} features but {cfg.data} has {d}")
            test = load_shard(cfg.test, size, rank, labels=label_mode)
        return shard, test

    t0 = time.perf_counter()
    shard, test = fail_together(comm, "loading the data", load)
    t_load = time.perf_counter() - t0
    n, d, dtype = shard.n_total, shard.d, shard.X.dtype
    n_classes = _count_classes(comm, shard, test) if label_mode == "classes" else 2
    model = make_model(cfg.model, d, n_classes, dtype, cfg.l2, cfg.hidden_sizes())
    t_compile = _warm_up_kernels(comm, model, shard.X, shard.y, log.always)

    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    params = model.init_params(seed=cfg.seed)  # a pure function of the seed: same on all ranks
    opt = make_optimizer(cfg.optimizer, params, cfg.momentum, cfg.weight_decay)
    base_lr = cfg.base_lr()
    metric_key = f"test_{model.metric_name}"
    npar = model.nparams
    buf = np.zeros(npar + 2, dtype=dtype)          # [grad sums | loss sum | count]
    evalbuf = np.zeros(npar + 4, dtype=np.float64)  # [grad | loss | count | correct | test count]
    all_rows = np.arange(shard.n, dtype=np.int64)
    test_rows = np.arange(test.n if test else 0, dtype=np.int64)
    evalgrad = np.zeros(npar, dtype=dtype)

    header = {
        "type": "header", "version": __version__, "world_size": size,
        "hosts": sorted(set(comm.allgather(socket.gethostname()))),
        "python": platform.python_version(), "config": asdict(cfg),
        "n_train": n, "n_test": test.n_total if test else 0, "d": d, "dtype": str(dtype),
        "steps_per_epoch": steps_per_epoch, "model": cfg.model, "n_classes": n_classes,
        "nparams": npar, "lr_scaled": base_lr,
    }
    log.record(header)
    log.always(
        f"mpidml {__version__}: {size} rank(s), {_describe(cfg, n_classes)} on {cfg.data} ({n} x {d} {dtype}), "
        f"global batch {cfg.batch_size}, {steps_per_epoch} steps/epoch, lr {base_lr:g} {cfg.lr_schedule}, "
        f"{_describe_optimizer(cfg)}, l2 {cfg.l2}")
    log.always(f"start-up: data load {t_load:.2f} s, kernel compile/load {t_compile:.2f} s")

    def evaluate():
        """Exact full-data objective and gradient norm; test accuracy (one allreduce)."""
        evalbuf[:] = 0
        evalbuf[npar] = model.loss_grad_sum(shard.X, shard.y, all_rows, params, evalgrad)
        evalbuf[:npar] = evalgrad
        evalbuf[npar + 1] = shard.n
        if test is not None:
            evalbuf[npar + 2] = model.metric_sum(test.X, test.y, test_rows, params)
            evalbuf[npar + 3] = test.n
        ring_allreduce(comm, evalbuf)
        grad = evalbuf[:npar] / max(evalbuf[npar + 1], 1)
        model.add_regularizer_grad(params, grad)
        objective = evalbuf[npar] / max(evalbuf[npar + 1], 1) + model.regularizer(params)
        acc = (model.finish_metric(evalbuf[npar + 2], evalbuf[npar + 3])
               if test is not None and evalbuf[npar + 3] else None)
        return float(objective), float(np.linalg.norm(grad)), acc

    objective0, gnorm0, _ = evaluate()
    log.info(f"epoch {0:>3}/{cfg.epochs}  objective {objective0:.6f}")
    counters.reset()
    train_time = 0.0
    step = 0
    history = []
    for epoch in range(1, cfg.epochs + 1):
        rng = np.random.default_rng([cfg.seed, epoch, rank])
        perm = rng.permutation(shard.n).astype(np.int64, copy=False)
        t_epoch = time.perf_counter()
        for s in range(steps_per_epoch):
            if fault is not None:
                fault.check(rank, step)
            a, b = shard_rows(shard.n, steps_per_epoch, s)
            buf[npar] = model.loss_grad_sum(shard.X, shard.y, perm[a:b], params, buf[:npar])
            buf[npar + 1] = b - a
            ring_allreduce(comm, buf)
            count = buf[npar + 1]
            if count > 0:  # same value on every rank: all skip or none
                grad = buf[:npar]
                grad *= dtype.type(1.0 / count)
                model.add_regularizer_grad(params, grad)
                opt.step(grad, lr_at(step, total_steps, base_lr, cfg.lr_schedule, cfg.warmup_steps,
                                     cfg.lr_decay_every, cfg.lr_gamma))
            step += 1
        elapsed = time.perf_counter() - t_epoch
        train_time += elapsed
        objective, gnorm, acc = evaluate()
        if not math.isfinite(objective):
            from .runtime.errors import MpidmlError
            raise MpidmlError(f"objective became {objective} at epoch {epoch} (step {step}); "
                              f"lower --lr (now {cfg.lr})")
        rec = {"type": "epoch", "epoch": epoch, "step": step, "samples": epoch * n,
               "train_seconds": train_time, "objective": objective, "grad_norm": gnorm,
               metric_key: acc, "samples_per_second": n / elapsed,
               "bytes_communicated": counters.total}
        history.append(rec)
        log.record(rec)
        acc_s = f"  {metric_key} {acc:.4f}" if acc is not None else ""
        log.info(f"epoch {epoch:>3}/{cfg.epochs}  objective {objective:.6f}{acc_s}  "
                 f"samples/s {n / elapsed:,.0f}  ({elapsed:.2f} s)")

    digests = comm.allgather(_digest(params))
    byte_counts = comm.allgather(counters.total)
    summary = {
        "type": "summary", "epochs": cfg.epochs, "steps": step, "world_size": size,
        "objective_initial": objective0, "objective": history[-1]["objective"],
        "grad_norm": history[-1]["grad_norm"], metric_key: history[-1][metric_key],
        "train_seconds": train_time, "startup_seconds": t_load + t_compile,
        "compile_seconds": t_compile, "load_seconds": t_load,
        "wall_seconds": time.perf_counter() - t_start,
        "samples_per_second": n * cfg.epochs / train_time if train_time else None,
        "bytes_communicated": max(byte_counts),
        "params_identical": len(set(digests)) == 1, "params_digest": digests[0],
    }
    log.record(summary)
    log.close()
    acc = summary[metric_key]
    log.always(
        f"done: {cfg.epochs} epochs, {step} steps in {train_time:.2f} s training "
        f"(+ {summary['startup_seconds']:.2f} s start-up); objective {objective0:.6f} -> "
        f"{summary['objective']:.6f}" + (f", {metric_key.replace('_', ' ')} {acc:.4f}" if acc is not None else "")
        + f"; {summary['bytes_communicated'] / 1e6:.1f} MB sent+received per rank; "
        f"replicas identical: {'yes' if summary['params_identical'] else 'NO'}")
    summary["params"] = params
    return summary


def _count_classes(comm, shard, test) -> int:
    """K = 1 + the largest class label on any rank (train and test), at least 2."""
    from mpi4py import MPI

    top = max([int(s.y.max()) for s in (shard, test) if s is not None and s.n] or [0])
    return max(2, comm.allreduce(top, op=MPI.MAX) + 1)


def _describe(cfg: TrainConfig, n_classes: int) -> str:
    if cfg.model == "mlp":
        return f"mlp {cfg.hidden.replace(',', '-')}-{n_classes}"
    return f"softmax K={n_classes}" if cfg.model == "softmax" else cfg.model


def _describe_optimizer(cfg: TrainConfig) -> str:
    if cfg.optimizer in ("momentum", "nesterov") and cfg.momentum:
        text = f"{cfg.optimizer} {cfg.momentum}"
    else:
        text = "sgd" if cfg.optimizer != "adam" else "adam"
    if cfg.weight_decay:
        text += f", weight decay {cfg.weight_decay}"
    if cfg.warmup_steps:
        text += f", warm-up {cfg.warmup_steps} steps"
    return text


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items()})
    from .runtime.errors import install_abort_hook

    install_abort_hook()
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()  # own communicator: our tags never meet the user's
    train(cfg, comm)
    comm.Free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
