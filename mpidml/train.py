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
    seed: int = 0
    metrics: str | None = None
    inject_fault: str | None = None
    quiet: bool = False
    memory_budget: str | int | None = None   # out-of-core: "512M" (CLI, >= 256M) or bytes (API)
    stream_in_memory: bool = False           # testing aid: the streamed row order, data in memory

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
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"--lr-schedule must be constant or cosine, got {self.lr_schedule!r}")
        if isinstance(self.memory_budget, str):
            from .data.stream import parse_memory_budget
            self.memory_budget = parse_memory_budget(self.memory_budget)
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f"--memory-budget must be positive, got {self.memory_budget}")
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
            "labels 0/1 (-1/+1 mapped), or a directory/glob of such shard files; see "
            "`python -m mpidml.data --help`. Exit status: 0 success; 1 a rank failed (all ranks aborted, message "
            "names the rank); 2 bad arguments or input (reported once by rank 0)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="FILE.h5", default=d.data,
                   help="training set (HDF5 file with /X and /y, a directory of shard files, or a "
                        "quoted glob); default: the embedded synthetic set")
    g.add_argument("--test", metavar="FILE.h5", default=d.test,
                   help="test set for accuracy, same schema; default: the embedded set's test file "
                        "when --data is not given, otherwise none")
    g.add_argument("--cache-dir", metavar="DIR", default=d.cache_dir,
                   help="where the embedded data set is generated and cached "
                        "(default: $MPIDML_CACHE_DIR or ~/.cache/mpidml)")
    g.add_argument("--memory-budget", metavar="SIZE", default=d.memory_budget,
                   help="out-of-core mode: stream each rank's rows from disk in chunks so that "
                        "the data held in memory stays within SIZE per rank (e.g. 512M, 2G; at "
                        "least 256M); rows are shuffled within chunks; default: load the shard")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="GLOBAL minibatch size (summed over ranks); each rank takes its share "
                        "of every step from its own rows")
    g.add_argument("--lr", type=float, default=d.lr, help="base learning rate")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"], default=d.lr_schedule,
                   help="learning-rate schedule over all steps (cosine decays to 0)")
    g.add_argument("--momentum", type=float, default=d.momentum, help="heavy-ball momentum (0 = plain SGD)")
    g.add_argument("--l2", type=float, default=d.l2, help="L2 regularisation strength on the weights")
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
        model.correct(X, y, rows, params)

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
    from .data.batches import InMemoryRows, StreamedRows, loss_grad_pieces
    from .data.loader import load_shard_collective
    from .data.stream import open_stream_collective
    from .models import LogReg
    from .optim import SGD, lr_at
    from .runtime.errors import MpidmlError, fail_together
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

    def check_loaded(shard, test):
        for s in (shard, test):
            if s is not None and s.sparse:
                raise MpidmlError(f"{s.path}: /X is sparse (CSR); the logreg model needs dense /X")
        if test is not None and test.d != shard.d:
            raise MpidmlError(f"{cfg.test}: /X has {test.d} features but {cfg.data} has {shard.d}")

    t0 = time.perf_counter()
    stream = None
    if cfg.memory_budget and not cfg.stream_in_memory:
        stream = open_stream_collective(comm, cfg.data, cfg.memory_budget, "binary", log=log.always)
        shard = stream.sample_shard()  # a few rows: schema, dtypes, kernel warm-up
    else:
        shard = load_shard_collective(comm, cfg.data, "binary", log=log.always)
    test = load_shard_collective(comm, cfg.test, "binary", log=log.always,
                                 what="loading the test data") if cfg.test else None
    fail_together(comm, "loading the data", check_loaded, shard, test)
    t_load = time.perf_counter() - t0
    n, d, dtype = shard.n_total, shard.d, shard.X.dtype
    if stream is not None:
        source = StreamedRows(stream)
    elif cfg.memory_budget:
        from .data.stream import ChunkStream
        with ChunkStream(shard.dataset, shard.start, shard.stop, cfg.memory_budget) as plan:
            source = InMemoryRows(shard.X, shard.y, [b - a for a, b in plan.ranges])
    else:
        source = InMemoryRows(shard.X, shard.y)
    model = LogReg(d, dtype=dtype, l2=cfg.l2)
    t_compile = _warm_up_kernels(comm, model, shard.X, shard.y, log.always)

    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    params = model.init_params()
    opt = SGD(params, momentum=cfg.momentum)
    npar = model.nparams
    buf = np.zeros(npar + 2, dtype=dtype)          # [grad sums | loss sum | count]
    evalbuf = np.zeros(npar + 4, dtype=np.float64)  # [grad | loss | count | correct | test count]
    scratch = np.zeros(npar, dtype=dtype)
    test_rows = np.arange(test.n if test else 0, dtype=np.int64)
    evalgrad = np.zeros(npar, dtype=dtype)

    header = {
        "type": "header", "version": __version__, "world_size": size,
        "hosts": sorted(set(comm.allgather(socket.gethostname()))),
        "python": platform.python_version(), "config": asdict(cfg),
        "n_train": n, "n_test": test.n_total if test else 0, "d": d, "dtype": str(dtype),
        "steps_per_epoch": steps_per_epoch,
    }
    log.record(header)
    log.always(
        f"mpidml {__version__}: {size} rank(s), logreg on {cfg.data} ({n} x {d} {dtype}), "
        f"global batch {cfg.batch_size}, {steps_per_epoch} steps/epoch, lr {cfg.lr} {cfg.lr_schedule}, "
        f"momentum {cfg.momentum}, l2 {cfg.l2}")
    log.always(f"start-up: data load {t_load:.2f} s, kernel compile/load {t_compile:.2f} s")

    def evaluate():
        """Exact full-data objective and gradient norm; test accuracy (one allreduce)."""
        evalbuf[:] = 0
        for X, y, rows in source.full():
            evalbuf[npar] += model.loss_grad_sum(X, y, rows, params, evalgrad)
            evalbuf[:npar] += evalgrad
        evalbuf[npar + 1] = source.n
        if test is not None:
            evalbuf[npar + 2] = model.correct(test.X, test.y, test_rows, params)
            evalbuf[npar + 3] = test.n
        ring_allreduce(comm, evalbuf)
        grad = evalbuf[:npar] / max(evalbuf[npar + 1], 1)
        grad[:d] += cfg.l2 * params[:d]
        objective = evalbuf[npar] / max(evalbuf[npar + 1], 1) + model.regularizer(params)
        acc = evalbuf[npar + 2] / evalbuf[npar + 3] if test is not None and evalbuf[npar + 3] else None
        return float(objective), float(np.linalg.norm(grad)), acc

    objective0, gnorm0, _ = evaluate()
    log.info(f"epoch {0:>3}/{cfg.epochs}  objective {objective0:.6f}")
    counters.reset()
    train_time = 0.0
    step = 0
    history = []
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        for pieces in source.epoch(steps_per_epoch, cfg.seed, epoch, rank):
            if fault is not None:
                fault.check(rank, step)
            buf[npar] = loss_grad_pieces(model, pieces, params, buf[:npar], scratch)
            buf[npar + 1] = sum(len(rows) for _, _, rows in pieces)
            ring_allreduce(comm, buf)
            count = buf[npar + 1]
            if count > 0:  # same value on every rank: all skip or none
                grad = buf[:npar]
                grad *= dtype.type(1.0 / count)
                model.add_regularizer_grad(params, grad)
                opt.step(grad, lr_at(step, total_steps, cfg.lr, cfg.lr_schedule))
            step += 1
        pieces = None  # out-of-core: do not pin the last chunk during evaluation
        elapsed = time.perf_counter() - t_epoch
        train_time += elapsed
        objective, gnorm, acc = evaluate()
        if not math.isfinite(objective):
            raise MpidmlError(f"objective became {objective} at epoch {epoch} (step {step}); "
                              f"lower --lr (now {cfg.lr})")
        rec = {"type": "epoch", "epoch": epoch, "step": step, "samples": epoch * n,
               "train_seconds": train_time, "objective": objective, "grad_norm": gnorm,
               "test_accuracy": acc, "samples_per_second": n / elapsed,
               "bytes_communicated": counters.total}
        history.append(rec)
        log.record(rec)
        acc_s = f"  test_acc {acc:.4f}" if acc is not None else ""
        log.info(f"epoch {epoch:>3}/{cfg.epochs}  objective {objective:.6f}{acc_s}  "
                 f"samples/s {n / elapsed:,.0f}  ({elapsed:.2f} s)")

    digests = comm.allgather(_digest(params))
    byte_counts = comm.allgather(counters.total)
    summary = {
        "type": "summary", "epochs": cfg.epochs, "steps": step, "world_size": size,
        "objective_initial": objective0, "objective": history[-1]["objective"],
        "grad_norm": history[-1]["grad_norm"], "test_accuracy": history[-1]["test_accuracy"],
        "train_seconds": train_time, "startup_seconds": t_load + t_compile,
        "compile_seconds": t_compile, "load_seconds": t_load,
        "wall_seconds": time.perf_counter() - t_start,
        "samples_per_second": n * cfg.epochs / train_time if train_time else None,
        "bytes_communicated": max(byte_counts),
        "params_identical": len(set(digests)) == 1, "params_digest": digests[0],
    }
    log.record(summary)
    log.close()
    if stream is not None:
        stream.close()
    acc = summary["test_accuracy"]
    log.always(
        f"done: {cfg.epochs} epochs, {step} steps in {train_time:.2f} s training "
        f"(+ {summary['startup_seconds']:.2f} s start-up); objective {objective0:.6f} -> "
        f"{summary['objective']:.6f}" + (f", test accuracy {acc:.4f}" if acc is not None else "")
        + f"; {summary['bytes_communicated'] / 1e6:.1f} MB sent+received per rank; "
        f"replicas identical: {'yes' if summary['params_identical'] else 'NO'}")
    summary["params"] = params
    return summary


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
