"""Set-up of a training run: configuration check, data plan, model, algorithm, checkpoints.

Each function fills in part of the ``Trainer`` (``t``) and is collective over
``t.comm`` where it says so. What differs between algorithms is asked of the
algorithm class (``serving_ranks``, ``load_data``, ``build_model``,
``optimizer_name``), never decided here by name.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import platform
import socket
import time

import numpy as np

from .. import __version__
from .hooks import Hooks, RunLog

__all__ = ["set_up", "model_class", "describe_model", "describe_optimizer"]


def set_up(t) -> None:
    """Collective: everything before the first epoch."""
    from ..algos import algorithm_class

    t.hooks = Hooks([])     # until install_hooks: phases only beat the watchdog
    _check_config(t)
    t.algo_cls = algorithm_class(t.cfg.algo)
    _load_data(t)
    _build_model(t)
    _build_algorithm(t)
    _open_checkpoints(t)
    _prepare_evaluation(t)
    t.install_hooks()
    _announce(t)


def _check_config(t) -> None:
    from ..comm.collectives import Collectives
    from ..data.cache import ensure_default_dataset
    from ..runtime.errors import MpidmlError, fail_together
    from ..runtime.faults import parse_fault

    cfg, comm = t.cfg, t.comm

    def check():
        from ..algos import algorithm_class

        cfg.validate()
        if t.user_model is None:
            model_class(cfg.model)        # a user's package.module:ClassName must import
        elif algorithm_class(cfg.algo).builds_own_model:
            user = t.user_model
            raise ValueError(f"--algo {cfg.algo} trains its own model; it cannot train a user model "
                             f"({getattr(user, '__name__', type(user).__name__)})")
        if cfg.on_failure == "shrink":
            from ..runtime.ulfm import failure_mitigation
            ft = failure_mitigation()
            if not ft.available:
                raise MpidmlError(f"--on-failure shrink needs an MPI that survives a dead rank; "
                                  f"{ft.library}: {ft.reason}")
        return parse_fault(cfg.inject_fault)

    t.fault = fail_together(comm, "checking the configuration", check)
    t.ckpt_lock = None
    if cfg.checkpoint_dir:     # one job per checkpoint directory, refused before the data is loaded
        from ..checkpoint import lock_directory
        t.ckpt_lock = lock_directory(comm, cfg.checkpoint_dir)
    # ONE Collectives for the run: its counters, its debug mode, the measured allreduce policy
    t.coll = Collectives(comm, debug=True if cfg.debug_collectives else None, impl=_run_impl(cfg))
    t.counters = t.coll.counters
    if cfg.on_failure == "shrink":
        from .recovery import Recovery
        t.recovery = Recovery(t)
    if cfg.data is None:
        t.mark("start-up: generating the default data set", -1, slow=True)
        cfg.data, cfg.test = ensure_default_dataset(comm, cfg.cache_dir, log=RunLog(t.rank, False, None).always)
    _check_outputs(t)
    t.log = fail_together(comm, "opening the metrics file", RunLog, t.rank, cfg.quiet, cfg.metrics)


def _run_impl(cfg) -> str | None:
    """The run's allreduce algorithm: --on-failure shrink takes MPI's own (the first
    increment of issue 20: mpidml's ring / shm loops do not yet notice a dead peer)."""
    return "native" if cfg.on_failure == "shrink" else None


def _check_outputs(t) -> None:
    """Collective: no output is an input of the run or an existing file of another kind
    (``runtime.outputs``); parent directories created. Before any file is opened."""
    from ..data.layout import input_files
    from ..runtime.errors import fail_together
    from ..runtime.outputs import check_outputs

    cfg = t.cfg
    inputs = input_files(("--data", cfg.data), ("--test", cfg.test), ("--config", cfg.config))
    fail_together(t.comm, "checking the output paths", check_outputs, cfg.outputs(), inputs)


def model_class(name: str):
    """The model class behind ``--model name``: a built-in name or ``package.module:ClassName``."""
    from ..models import MODEL_CLASSES

    if name in MODEL_CLASSES:
        return MODEL_CLASSES[name]
    module, _, attr = name.partition(":")
    if not attr:
        raise ValueError(f"--model must be one of {', '.join(MODEL_CLASSES)} or package.module:ClassName, "
                         f"got {name!r}")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--model {name}: cannot load {attr!r} from module {module!r} ({exc})") from None
    missing = [m for m in ("loss_grad_sum", "metric_sum", "init_params") if not callable(getattr(cls, m, None))]
    if missing or not hasattr(cls, "label_mode"):
        raise ValueError(f"--model {name}: {cls!r} does not follow the mpidml.Model protocol (missing: "
                         f"{', '.join(missing + ([] if hasattr(cls, 'label_mode') else ['label_mode']))})")
    return cls


def _label_mode(t) -> str:
    m = t.user_model if t.user_model is not None else model_class(t.cfg.model)
    return m.label_mode


def _load_data(t) -> None:
    """Collective: this rank's training rows (or column block) and the test set."""
    from ..data.loader import load_shard_collective
    from ..data.stream import open_stream_collective
    from ..runtime.errors import MpidmlError, fail_together

    cfg, comm, log = t.cfg, t.comm, t.log
    t.mark("start-up: loading the data", -1, slow=True)
    t0 = time.perf_counter()
    label_mode = _label_mode(t)
    t.stream = None
    servers = t.algo_cls.serving_ranks(cfg, t.size)
    part = None
    if servers:   # the last rank(s) serve (centre variable / parameter shards) and hold no data
        workers = max(t.size - servers, 1)
        part = (workers, t.rank if t.rank < workers else -1)
    budget = cfg.memory_budget_bytes()
    planned = t.algo_cls.load_data(comm, cfg, label_mode, log.always)
    if planned is not None:
        shard, test = planned
    else:
        if budget and not cfg.stream_in_memory:
            t.stream = open_stream_collective(comm, cfg.data, budget, label_mode, log=log.always, part=part)
            shard = t.stream.sample_shard()  # a few rows: schema, dtypes, kernel warm-up
        else:
            shard = load_shard_collective(comm, cfg.data, label_mode, log=log.always, part=part)
        test = load_shard_collective(comm, cfg.test, label_mode, log=log.always,
                                     what="loading the test data") if cfg.test else None

    def check_loaded():
        if test is not None and test.d != shard.d:
            raise MpidmlError(f"{cfg.test}: /X has {test.d} features but {cfg.data} has {shard.d}")

    fail_together(comm, "loading the data", check_loaded)
    t.shard, t.test = shard, test
    t.source = _row_source(t, shard, budget, servers)
    t.t_load = time.perf_counter() - t0
    t.n, t.d = shard.n_total, shard.d
    t.n_classes = _count_classes(comm, shard, test) if label_mode == "classes" else 2


def _row_source(t, shard, budget, servers):
    """How this rank's rows are visited: in memory, streamed, or re-read every epoch."""
    from ..data.batches import EpochReadRows, InMemoryRows, StreamedRows

    cfg = t.cfg
    if t.stream is not None:
        return StreamedRows(t.stream)
    if budget:
        from ..data.stream import ChunkStream
        with ChunkStream(shard.dataset, shard.start, shard.stop, budget) as plan:
            return InMemoryRows(shard.X, shard.y, [b - a for a, b in plan.ranges])
    if cfg.partition != "contiguous":
        return EpochReadRows(shard, t.size - servers, cfg.partition)   # re-reads its rows every epoch
    return InMemoryRows(shard.X, shard.y)


def _count_classes(comm, shard, test) -> int:
    """K = 1 + the largest class label on any rank (train and test), at least 2."""
    from mpi4py import MPI

    top = max([int(s.y.max()) for s in (shard, test) if s is not None and s.n] or [0])
    return max(2, comm.allreduce(top, op=MPI.MAX) + 1)


def _build_model(t) -> None:
    """Collective: the model (asked of the algorithm), its kernels compiled, its parameters."""
    from ..runtime.errors import fail_together
    from ..runtime.threads import limit_threads, parse_threads

    cfg, comm, shard = t.cfg, t.comm, t.shard
    t.threads, t.threads_applied = limit_threads(comm, parse_threads(cfg.threads))
    dtype = shard.X.dtype

    def default():
        return _configured_model(t, dtype)

    t.model = fail_together(comm, "building the model", t.algo_cls.build_model, comm, cfg, shard, default)
    if cfg.hogwild_threads:
        from ..algos.hogwild import check_hogwild
        fail_together(comm, "checking --hogwild-threads", check_hogwild, cfg, shard)
    t.mark("start-up: compiling kernels", -1, slow=True)
    t.t_compile = _warm_up_kernels(t)
    t.steps_per_epoch = max(1, math.ceil(t.n / cfg.batch_size))
    t.total_steps = t.steps_per_epoch * cfg.epochs
    t.params = t.model.init_params(seed=cfg.seed)  # a pure function of the seed: same on all ranks
    t.base_lr = cfg.base_lr()
    t.metric_key = f"test_{t.model.metric_name}"
    t.scratch = np.zeros(t.model.nparams, dtype=dtype)


def _configured_model(t, dtype):
    """The model of ``--model`` (or the Python API's ``model=``) for the loaded data."""
    from ..models import MODEL_CLASSES, make_model

    cfg, m = t.cfg, t.user_model
    if m is not None and not isinstance(m, type):
        return m                                            # an instance, built by the user
    if m is None and cfg.model in MODEL_CLASSES:   # with several threads per rank, logreg takes prange kernels
        return make_model(cfg.model, t.d, t.n_classes, dtype, cfg.l2, cfg.hidden_sizes(),
                          parallel=t.threads_applied["numba"] > 1)
    cls = m if m is not None else model_class(cfg.model)
    build = getattr(cls, "build", None)
    if build is not None:
        return build(t.d, n_classes=t.n_classes, dtype=dtype, l2=cfg.l2)
    return cls(t.d, dtype=dtype, l2=cfg.l2)


def _warm_up_kernels(t) -> float:
    """Compile (or load from numba's cache) the kernels: rank 0 first, so concurrent
    ranks do not race to write the cache; the others then load it. Returns seconds."""
    from ..data.cache import polite_barrier
    from ..models import warm_up

    model, X, y = t.model, t.shard.X, t.shard.y
    t0 = time.perf_counter()
    for turn in (0, 1):
        if (t.rank == 0) == (turn == 0):
            warm_up(model, X, y, hogwild=bool(t.cfg.hogwild_threads))
        polite_barrier(t.comm)
    return time.perf_counter() - t0


def _build_algorithm(t) -> None:
    """Collective: the optimizer and the algorithm instance on this rank."""
    from ..algos import AlgoContext
    from ..optim import make_optimizer
    from ..runtime.errors import fail_together

    cfg = t.cfg
    t.optimizer_name = cfg.effective_optimizer()
    t.opt = make_optimizer(t.optimizer_name, t.params, cfg.momentum, cfg.weight_decay)
    t.algo = fail_together(t.comm, "setting up --algo", t.algo_cls,
                           AlgoContext(t.comm, t.model, t.params, t.opt, cfg, rows=t.source.n, coll=t.coll))


def describe_model(cfg, model, n_classes: int, user_model=None) -> str:
    """The model as the start-up line and checkpoints name it."""
    if user_model is not None:
        cls = user_model if isinstance(user_model, type) else type(user_model)
        return f"{cls.__module__}:{cls.__qualname__}"
    if cfg.model == "mlp":
        return f"mlp {cfg.hidden.replace(',', '-')}-{n_classes}"
    return f"softmax K={n_classes}" if cfg.model == "softmax" else cfg.model


def describe_optimizer(cfg, name: str) -> str:
    if name in ("momentum", "nesterov") and cfg.momentum:
        text = f"{name} {cfg.momentum}"
    else:
        text = "sgd" if name != "adam" else "adam"
    if cfg.weight_decay:
        text += f", weight decay {cfg.weight_decay}"
    if cfg.warmup_steps:
        text += f", warm-up {cfg.warmup_steps} steps"
    return text


def _open_checkpoints(t) -> None:
    """Collective: the checkpointer and, with --resume, the state to continue from."""
    from ..checkpoint import Checkpointer
    from ..data.convert import stored_label_names

    cfg, log = t.cfg, t.log
    kind = cfg.model if t.user_model is None else describe_model(cfg, t.model, t.n_classes, t.user_model)
    # Checkpoints hold the shared state (parameters or the consensus/centre model,
    # optimizer buffers), the per-rank state of the algorithm where ranks differ, and the
    # step; the data position follows from it, the per-epoch order being a pure function
    # of (seed, epoch, rank).
    t.model_desc = {"kind": kind, "d": t.d, "dtype": str(t.shard.X.dtype),
                    "nparams": getattr(t.model, "nparams_full", t.model.nparams),
                    "classes": t.n_classes, "hidden": cfg.hidden if cfg.model == "mlp" else "",
                    "optimizer": t.optimizer_name, "algo": cfg.algo}
    ds = getattr(t.shard, "dataset", None)
    names = stored_label_names(ds.files[0].path) if ds is not None and t.n_classes else None
    if names:   # string labels mapped by `data convert`: predict names the classes
        t.model_desc["label_names"] = names
    t.ckpt = None
    t.start_step = 0
    if not cfg.checkpoint_dir:
        return
    t.mark("start-up: checkpoints", -1, slow=True)
    t.ckpt = Checkpointer(t.comm, cfg.checkpoint_dir, cfg.checkpoint_keep, t.model_desc,
                          {k: v for k, v in dataclasses.asdict(cfg).items() if k != "resume"}, t.fault,
                          data=cfg.data, resume=cfg.resume, overwrite=cfg.overwrite_checkpoints,
                          resume_with_changes=cfg.resume_with_changes, lock=t.ckpt_lock)
    found = t.ckpt.open(log.always)   # claims the directory, or finds this run's checkpoint
    if not cfg.resume:
        return
    if found is None:
        log.always(f"resume: no checkpoint in {cfg.checkpoint_dir}; starting from step 0")
        return
    t.algo.load_state(found.state, found.per_rank, found.meta.get("world_size") == t.size)
    t.start_step = int(found.meta["step"])
    if t.fault is not None:
        t.fault.resume_at(t.start_step)
    was = found.meta.get("world_size")
    log.always(f"resume: {found.path} (step {t.start_step}, written by {was} rank(s))"
               + ("" if was == t.size else f"; re-partitioned for {t.size} rank(s): the rest "
                  f"of the interrupted epoch uses the new ranks' row order"))


def _prepare_evaluation(t) -> None:
    from .evaluation import Evaluator

    t.evaluator = Evaluator(t.comm, t.model, t.source, t.test, t.coll.allreduce,
                            beat=lambda: t.mark("evaluate", t.step),
                            fault=t.fault)


def _announce(t) -> None:
    """Collective: the metrics header and the start-up lines."""
    cfg, comm, log, algo = t.cfg, t.comm, t.log, t.algo
    dtype = t.shard.X.dtype
    header = {
        "type": "header", "version": __version__, "world_size": t.size,
        "hosts": sorted(set(comm.allgather(socket.gethostname()))),
        "python": platform.python_version(), "config": dataclasses.asdict(cfg),
        "n_train": t.n, "n_test": t.test.n_total if t.test else 0, "d": t.d, "dtype": str(dtype),
        "steps_per_epoch": t.steps_per_epoch, "model": t.model_desc["kind"], "n_classes": t.n_classes,
        "resume_changes": t.ckpt.resume_changes if t.ckpt is not None else [],
        "threads": {**t.threads.as_dict(), "applied": t.threads_applied}, "nparams": t.model_desc["nparams"],
        "lr_scaled": t.base_lr, "algo": algo.describe(),
        # parameters + gradient + optimizer buffers this rank holds (max over ranks)
        "model_bytes_per_rank": max(comm.allgather(algo.params.nbytes + algo.grad.nbytes + sum(
            a.nbytes for a in algo.opt.state().values()))),
    }
    log.record(header)
    log.always(
        f"mpidml {__version__}: {t.size} rank(s), {describe_model(cfg, t.model, t.n_classes, t.user_model)} on "
        f"{cfg.data} ({t.n} x {t.d} {dtype}), global batch {cfg.batch_size}, {t.steps_per_epoch} steps/epoch, "
        f"lr {t.base_lr:g} {cfg.lr_schedule}, {describe_optimizer(cfg, t.optimizer_name)}, l2 {cfg.l2}; "
        f"{algo.describe()}")
    log.always(f"start-up: data load {t.t_load:.2f} s, kernel compile/load {t.t_compile:.2f} s; "
               f"{t.threads.describe()}")
    if t.watchdog.liveness_off and t.cfg.liveness_timeout:
        log.always(f"note: peer liveness heartbeat off ({t.watchdog.liveness_off}): a stopped rank ends the job "
                   f"only through --stall-timeout")
    if cfg.verbose:
        shard = t.shard
        ranks = comm.gather((shard.start, shard.start + shard.n, socket.gethostname(), t.t_load), root=0)
        if t.rank == 0:
            for r, (a, b, host, tl) in enumerate(ranks):
                log.always(f"  rank {r} on {host}: rows {a}..{b} ({b - a} rows), loaded in {tl:.2f} s")
