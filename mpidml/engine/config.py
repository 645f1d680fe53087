"""The training configuration in parts, and the command line and TOML built from it.

Each part is a dataclass of self-describing fields (``mpidml.options.knob``) with a
``validate()`` that raises ``ValueError`` naming the setting and never changes the
object:

    DataConfig        --data, --test, --memory-budget, --partition, ...
    ModelConfig       --model, --hidden, --l2
    OptimConfig       --epochs, --batch-size, --lr, schedules, optimizer, --seed
    AlgoConfig        --algo and the options several algorithms share (--tau, --topology, ...)
    CheckpointConfig  checkpoints, watchdog, fault injection
    OutputConfig      metrics, timeline, progress, saved model
    <algorithm>.Config  each algorithm's own options (registered with it: algos/*.py)

``TrainConfig`` is all of them as one flat dataclass (``cfg.lr``, ``cfg.tau``): the
Python API's and the CLI's single object. ``build_parser`` makes the argparse parser
from the fields (flag, help, choices, type), ``load_toml`` checks a TOML file against
the same fields, so ``--help``, TOML and the API cannot drift apart.

Importing this module imports no numeric stack beyond numpy-free registries:
``--help``, ``--version`` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..algos import algorithm_class, algorithm_names
from ..algos.admm import ADMMConfig
from ..algos.choco import ChocoConfig
from ..algos.easgd import EASGDConfig
from ..algos.local_sgd import LocalSGDConfig
from ..algos.ps import PSConfig
from ..optim import OPTIMIZERS as _OPTIMIZERS
from ..optim import SCHEDULES as _SCHEDULES
from ..options import Knob, check_value, knob, knobs_of

__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "AlgoConfig", "CheckpointConfig", "OutputConfig",
           "TrainConfig", "PARTS", "BUILTIN_MODELS", "build_parser", "parse_args", "load_toml", "config_from_args"]

#: the built-in ``--model`` names (mpidml.models.MODEL_CLASSES has the classes; a test
#: keeps the two equal). Any other model is ``--model package.module:ClassName``.
BUILTIN_MODELS = ("logreg", "softmax", "lsq", "mlp")


def _partitions():
    from ..data.partition import PARTITIONS
    return PARTITIONS


def _topologies():
    from ..comm.topology import TOPOLOGIES
    return TOPOLOGIES


def _codecs():
    from ..comm.codecs import CODECS
    return ("none", *CODECS)


@dataclass
class DataConfig:
    """Where the rows come from and how ranks read them."""

    GROUP = "data"
    data: str | None = knob(None, "training set (HDF5 file with /X and /y, a directory of shard files, or a "
                                  "quoted glob); default: the embedded synthetic set",
                            metavar="FILE.h5", kind=(str, type(None)))
    test: str | None = knob(None, "test set for accuracy, same schema; default: the embedded set's test file "
                                  "when --data is not given, otherwise none",
                            metavar="FILE.h5", kind=(str, type(None)))
    cache_dir: str | None = knob(None, "where the embedded data set is generated and cached "
                                       "(default: $MPIDML_CACHE_DIR or ~/.cache/mpidml)",
                                 metavar="DIR", kind=(str, type(None)))
    memory_budget: str | int | None = knob(
        None, "out-of-core mode: stream each rank's rows from disk in chunks so that the data held in memory "
              "stays within SIZE per rank (e.g. 512M, 2G; at least 256M); rows are shuffled within chunks; "
              "default: load the shard", metavar="SIZE", kind=(str, int, type(None)))
    partition: str = knob("contiguous", "rows per rank and epoch: contiguous (a fixed balanced block, shuffled "
                                        "within it each epoch); shuffle (a balanced block of a new global "
                                        "permutation every epoch, read from disk each epoch); sample (n/p rows "
                                        "drawn with replacement per rank and epoch, read from disk each epoch)",
                          choices=_partitions)
    stream_in_memory: bool = knob(False, "testing aid: the streamed row order, data in memory", cli=False)

    def memory_budget_bytes(self) -> int | None:
        """``--memory-budget`` in bytes (None: load the whole shard)."""
        if isinstance(self.memory_budget, str):
            from ..data.stream import parse_memory_budget
            return parse_memory_budget(self.memory_budget)
        return self.memory_budget

    def validate(self) -> None:
        budget = self.memory_budget_bytes()
        if budget is not None and budget <= 0:
            raise ValueError(f"--memory-budget must be positive, got {self.memory_budget}")
        if self.partition not in _partitions():
            raise ValueError(f"--partition must be one of {', '.join(_partitions())}, got {self.partition!r}")
        if self.partition != "contiguous" and budget:
            raise ValueError(f"--partition {self.partition} reads each epoch's rows into memory; "
                             f"it cannot be combined with --memory-budget")
        if self.test and not self.data:
            raise ValueError("--test needs --data (the default data set brings its own test file)")


@dataclass
class ModelConfig:
    """Which model is trained."""

    GROUP = "model"
    model: str = knob("logreg", "logreg: binary logistic (labels 0/1); softmax: multinomial logistic and mlp: "
                                "ReLU perceptron with softmax output (labels 0..K-1, K = max label + 1); lsq: "
                                "least squares / ridge (real labels, reports RMSE); or your own class as "
                                "package.module:ClassName (the mpidml.Model protocol, see docs/models.md)",
                      metavar="|".join(BUILTIN_MODELS) + "|PKG.MOD:CLASS")
    hidden: str = knob("256,128", "hidden layer widths of --model mlp", metavar="W1,W2,...")
    l2: float = knob(1e-4, "L2 regularisation strength on the weights (part of the objective; biases exempt)")

    def hidden_sizes(self) -> tuple[int, ...]:
        """``--hidden 256,128`` as a tuple of layer widths (ValueError if malformed)."""
        try:
            sizes = tuple(int(h) for h in self.hidden.split(",") if h.strip())
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"--hidden must be comma-separated positive widths, got {self.hidden!r}")
        return sizes

    def validate(self) -> None:
        if self.model not in BUILTIN_MODELS and ":" not in self.model:
            raise ValueError(f"--model must be one of {', '.join(BUILTIN_MODELS)} or package.module:ClassName, "
                             f"got {self.model!r}")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise ValueError(f"--l2 must be >= 0, got {self.l2}")
        self.hidden_sizes()


@dataclass
class OptimConfig:
    """How each step moves the parameters."""

    GROUP = "optimisation"
    epochs: int = knob(5, "passes over the training set")
    batch_size: int = knob(1024, "GLOBAL minibatch size (summed over ranks); each rank takes its share of "
                                 "every step from its own rows")
    lr: float = knob(0.5, "base learning rate")
    lr_schedule: str = knob("cosine", "learning-rate schedule over all steps (cosine decays to 0; step "
                                      "multiplies by --lr-gamma every --lr-decay-every steps)", choices=_SCHEDULES)
    momentum: float = knob(0.9, "momentum of --optimizer momentum/nesterov (0 = plain SGD)")
    optimizer: str = knob("momentum", "sgd; momentum (heavy ball, --momentum); nesterov; adam (beta "
                                      "0.9/0.999); admm runs sgd and eamsgd nesterov whatever is given",
                          choices=_OPTIMIZERS)
    weight_decay: float = knob(0.0, "decoupled weight decay w -= lr*wd*w per step (AdamW-style), on all "
                                    "parameters")
    warmup_steps: int = knob(0, "linear learning-rate warm-up over the first steps")
    lr_decay_every: int = knob(0, "steps between decays of --lr-schedule step")
    lr_gamma: float = knob(0.1, "decay factor of --lr-schedule step")
    lr_reference_batch: int = knob(0, "linear scaling rule: use lr * batch-size / this (0 = use --lr as given)")
    seed: int = knob(0, "seed for the per-epoch shuffling of rows")

    def base_lr(self) -> float:
        """--lr, linearly scaled by batch_size / lr_reference_batch when that is set (Goyal 2017)."""
        if self.lr_reference_batch:
            return self.lr * self.batch_size / self.lr_reference_batch
        return self.lr

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.lr_schedule not in _SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.lr_schedule == "step" and self.lr_decay_every < 1:
            raise ValueError("--lr-schedule step needs --lr-decay-every >= 1")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {', '.join(_OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.weight_decay >= 0 and self.warmup_steps >= 0 and self.lr_reference_batch >= 0):
            raise ValueError("--weight-decay, --warmup-steps and --lr-reference-batch must be >= 0")
        if not (self.lr_gamma > 0 and math.isfinite(self.lr_gamma)):
            raise ValueError(f"--lr-gamma must be a positive number, got {self.lr_gamma}")


@dataclass
class AlgoConfig:
    """Which algorithm, and the options several algorithms share."""

    GROUP = "algorithm (what the ranks exchange, with whom, when)"
    algo: str = knob("sync", "sync: allreduce of gradients every step (BSP); local_sgd: average models every "
                             "--tau steps; easgd/eamsgd: elastic averaging with a centre model every --tau steps "
                             "(eamsgd: Nesterov momentum); easgd_async: each worker meets a centre rank (the last "
                             "rank, no data) every --tau of its own steps, nobody waits for a straggler; gossip: "
                             "D-PSGD with neighbours on --topology; pushsum: stochastic gradient push, one peer per "
                             "step; choco: CHOCO-SGD, compressed gossip; admm: consensus ADMM (convex models), "
                             "local proximal steps and a z-update every --tau steps (plain SGD local steps); "
                             "feature_parallel: model parallelism for logreg, each rank holds a column block of X "
                             "and of the weights (1/p of the weights per rank); ps: parameter server (--servers, "
                             "--staleness, --dc-lambda); or your own as package.module:ClassName. See "
                             "docs/algorithms.md for a guide to choosing", metavar="NAME")
    tau: int = knob(8, "local_sgd/easgd/easgd_async/admm: local steps between model averages / centre meetings "
                       "/ z-updates")
    topology: str = knob("ring", "gossip/choco: who talks to whom (Metropolis-Hastings mixing weights). At p = 4 "
                                 "torus and hypercube are the ring; for prime p the torus is a ring (the start-up "
                                 "line reports the spectral gap)", choices=_topologies)
    compress: str = knob("none", "sync: compress gradients (fp16 ring-reduced; qsgd reduced and re-quantised; "
                                 "topk with error feedback, sparse reduction or allgather, whichever moves fewer "
                                 "bytes); "
                                 "choco: the compressor of the gossiped differences (topk or qsgd)",
                         choices=_codecs)
    topk_ratio: float = knob(0.01, "fraction of coordinates top-k sends (sync with --optimizer momentum|nesterov: "
                                   "at least 8, the momentum is applied before compression, DGC)")
    qsgd_levels: int = knob(16, "QSGD quantisation levels (1..127)")
    control_every: int = knob(8, "gossip/pushsum/choco/feature_parallel: steps between the 32-byte global "
                                 "agreements on stop requests and NaN (the only global collective they make)",
                              metavar="STEPS")
    threads: str | int = knob("auto", "numba and BLAS threads per rank; auto: $OMP_NUM_THREADS if set, else the "
                                      "usable cores divided by the ranks on this node (at least 1), so ranks do "
                                      "not oversubscribe the cores", metavar="N|auto", kind=(str, int))
    hogwild_threads: int = knob(0, "local_sgd/easgd/gossip with --model logreg --optimizer sgd on CSR data: each "
                                   "local step is a lock-free Hogwild pass of per-row SGD over the minibatch on T "
                                   "numba threads sharing one weight vector (0 = off: minibatch gradient steps)",
                                metavar="T")

    def validate(self) -> None:
        from ..runtime.threads import parse_threads

        algorithm_class(self.algo)           # ValueError naming the choices
        parse_threads(self.threads)
        if self.tau < 1:
            raise ValueError(f"--tau must be >= 1, got {self.tau}")
        if self.control_every < 1:
            raise ValueError(f"--control-every must be >= 1, got {self.control_every}")
        if self.topology not in _topologies():
            raise ValueError(f"--topology must be one of {', '.join(_topologies())}, got {self.topology!r}")
        if self.compress not in _codecs():
            raise ValueError(f"--compress must be one of {', '.join(_codecs())}, got {self.compress!r}")
        if not 0 < self.topk_ratio <= 1:
            raise ValueError(f"--topk-ratio must be in (0, 1], got {self.topk_ratio}")
        if not 1 <= self.qsgd_levels <= 127:
            raise ValueError(f"--qsgd-levels must be in 1..127, got {self.qsgd_levels}")
        if self.hogwild_threads < 0:
            raise ValueError(f"--hogwild-threads must be >= 0, got {self.hogwild_threads}")


@dataclass
class CheckpointConfig:
    """Checkpoints, stalls, faults."""

    GROUP = "checkpoints and faults"
    checkpoint_dir: str | None = knob(None, "write checkpoints here (one HDF5 file each, atomic, last "
                                            "--checkpoint-keep kept); also written at the end and when "
                                            "SIGTERM/SIGUSR1 arrives", metavar="DIR", kind=(str, type(None)))
    checkpoint_every: int = knob(0, "steps between checkpoints (0: only at the end and on a signal)",
                                 metavar="STEPS")
    checkpoint_keep: int = knob(3, "how many checkpoints to keep", metavar="K")
    resume: bool = knob(False, "continue from the newest valid checkpoint in --checkpoint-dir (same rank count: "
                               "bit-for-bit; other counts: re-partitioned); none there: start fresh. Only this "
                               "directory's run is resumed, and only under the same settings")
    overwrite_checkpoints: bool = knob(False, "let a fresh run (no --resume) use a --checkpoint-dir that holds "
                                              "another run's checkpoints: they are moved aside and deleted once "
                                              "this run's first checkpoint is written (without this flag such a "
                                              "start is refused)")
    resume_with_changes: bool = knob(False, "let --resume continue under changed --lr, --epochs, schedule, "
                                            "--momentum, --l2 and similar settings (listed in the metrics header "
                                            "as resume_changes); changes of --batch-size, --data, --seed, "
                                            "--partition or the model are always refused")
    stall_timeout: float = knob(300.0, "abort the job when a live rank makes no progress for this long, naming "
                                       "where each rank was (0 = off); long phases (evaluation, loading) beat it "
                                       "too, and a rank waiting for a peer in an announced long phase waits "
                                       "longer. A stopped or vanished rank is caught sooner: --liveness-timeout",
                                metavar="SEC")
    liveness_timeout: float = knob(15.0, "abort the job when a rank's heartbeat (a thread, one small message a "
                                         "second) has not arrived for this long, naming the rank and its last "
                                         "phase: a stopped (SIGSTOP) or vanished rank (0 = off)", metavar="SEC")
    debug_collectives: bool = knob(False, "before every collective, check on all ranks that they entered the same "
                                          "one (name, size, dtype, op, root) and fail naming the first mismatch "
                                          "and where each rank called from; costs one small allgather per "
                                          "collective (also: MPIDML_DEBUG_COLLECTIVES=1)")
    inject_fault: str | None = knob(None, "testing aid, comma-separated: raise:RANK:STEP (exception), "
                                          "nan:RANK:STEP (NaN gradient), sleep:RANK:STEP:SEC (straggler/stall), "
                                          "slow:RANK:SEC (sleep every step), slow-eval:RANK:SEC (sleep in every "
                                          "evaluation pass), ckpt-crash:K (rank 0 dies while writing its K-th "
                                          "checkpoint), die:RANK:STEP (the rank kills itself with "
                                          "SIGKILL)", metavar="SPEC", kind=(str, type(None)))
    on_failure: str = knob("abort", "when a rank dies: abort (the job ends, naming the rank; resume from a "
                                    "checkpoint) or shrink (the survivors drop it and train on: needs Open MPI "
                                    "with ULFM, `mpiexec --with-ft ulfm`; --algo sync without --compress for "
                                    "now; the dead rank's rows are lost for the rest of the run)",
                           choices=("abort", "shrink"))

    def validate(self) -> None:
        if self.checkpoint_every < 0 or self.checkpoint_keep < 1:
            raise ValueError("--checkpoint-every must be >= 0 and --checkpoint-keep >= 1")
        if (self.resume or self.checkpoint_every) and not self.checkpoint_dir:
            raise ValueError("--resume and --checkpoint-every need --checkpoint-dir")
        if self.overwrite_checkpoints and (self.resume or not self.checkpoint_dir):
            raise ValueError("--overwrite-checkpoints starts a fresh run in --checkpoint-dir: it needs "
                             "--checkpoint-dir and cannot be combined with --resume")
        if self.resume_with_changes and not self.resume:
            raise ValueError("--resume-with-changes needs --resume")
        if not (self.stall_timeout >= 0):
            raise ValueError(f"--stall-timeout must be >= 0, got {self.stall_timeout}")
        if not (self.liveness_timeout == 0 or self.liveness_timeout >= 2):
            raise ValueError(f"--liveness-timeout must be 0 (off) or >= 2 seconds (heartbeats go once a second), "
                             f"got {self.liveness_timeout}")


@dataclass
class OutputConfig:
    """What the run writes and prints."""

    GROUP = "output and testing"
    metrics: str | None = knob(None, "write a JSON-lines log: header, one record per epoch, summary (rank 0)",
                               metavar="FILE.jsonl", kind=(str, type(None)))
    eval_every: int = knob(1, "evaluate the full training objective, gradient norm and test metric every EPOCHS "
                              "epochs and always after the last one (0: only after the last). Each evaluation is "
                              "one more pass over the training data: on large sets, evaluate less often",
                           metavar="EPOCHS")
    metrics_every: int = knob(0, "also write a {\"type\": \"step\"} metrics record every STEPS steps (0 = off)",
                              metavar="STEPS")
    save_model: str | None = knob(None, "save the trained model (parameters, model description, config, final "
                                        "metrics) for python -m mpidml.evaluate / mpidml.predict",
                                  metavar="FILE.h5", kind=(str, type(None)))
    timeline: str | None = knob(None, "write a Chrome-trace (Perfetto) timeline of every rank's compute / "
                                      "communicate / evaluate / checkpoint phases",
                                metavar="FILE.json", kind=(str, type(None)))
    config: str | None = knob(None, "read flags from a TOML file (keys are flag names, e.g. batch-size = 512); "
                                    "flags given on the command line override it",
                              metavar="FILE.toml", kind=(str, type(None)))
    quiet: bool = knob(False, "no per-epoch lines, only the summary", short="-q")
    verbose: bool = knob(False, "also print every rank's rows, load time and host at start-up", short="-v")
    progress: str = knob("auto", "progress inside an epoch on rank 0's stderr: a bar, plain lines every "
                                 "--progress-every seconds (batch logs), or none; auto = bar on a terminal",
                         choices=("auto", "bar", "plain", "none"))
    progress_every: float = knob(10.0, "seconds between plain progress lines", metavar="SEC")

    def outputs(self) -> list[tuple[str, str | None, str]]:
        """``(flag, path, kind)`` of every file the run writes (``runtime.outputs``)."""
        return [("--metrics", self.metrics, "metrics"), ("--save-model", self.save_model, "model"),
                ("--timeline", self.timeline, "timeline")]

    def validate(self) -> None:
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.metrics_every < 0:
            raise ValueError(f"--metrics-every must be >= 0, got {self.metrics_every}")
        if not self.progress_every >= 0:
            raise ValueError(f"--progress-every must be >= 0, got {self.progress_every}")


#: the general parts, in --help order; the algorithms' own parts follow them
PARTS = (DataConfig, ModelConfig, OptimConfig, AlgoConfig, CheckpointConfig, OutputConfig)
_ALGO_PARTS = (LocalSGDConfig, EASGDConfig, ChocoConfig, PSConfig, ADMMConfig)


@dataclass
class TrainConfig(OutputConfig, CheckpointConfig, AlgoConfig, OptimConfig, ModelConfig, DataConfig,
                  ADMMConfig, PSConfig, ChocoConfig, EASGDConfig, LocalSGDConfig):
    """Every setting of a training run (all parts in one flat object)."""

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (same verdict on every rank).
        Checks each part, then what the algorithm needs of the others. Changes nothing."""
        for part in (*PARTS, *_ALGO_PARTS):
            part.validate(self)
        cls = algorithm_class(self.algo)
        if self.compress != "none" and not cls.accepts_compression:
            takers = [n for n in algorithm_names() if algorithm_class(n).accepts_compression]
            raise ValueError(f"--compress works with --algo {' or '.join(takers)}, not {self.algo}")
        if self.hogwild_threads:
            self._check_hogwild(cls)
        if self.on_failure == "shrink" and (not cls.survives_failures or self.compress != "none"):
            takers = [n for n in algorithm_names() if algorithm_class(n).survives_failures]
            raise ValueError(f"--on-failure shrink supports only --algo {' or '.join(takers)} without --compress "
                             f"so far (issue 20); use --on-failure abort and --checkpoint-dir to resume")
        cls.check_config(self)

    def _check_hogwild(self, cls) -> None:
        import numba

        if not cls.accepts_hogwild:
            takers = [n for n in algorithm_names() if algorithm_class(n).accepts_hogwild]
            raise ValueError(f"--hogwild-threads is the local step of model-averaging algorithms: "
                             f"use --algo {' or '.join(takers)}, not {self.algo}")
        if self.model != "logreg" or self.optimizer != "sgd" or self.memory_budget:
            raise ValueError("--hogwild-threads updates logistic-regression weights row by row with plain "
                             "SGD: it needs --model logreg --optimizer sgd and no --memory-budget")
        limit = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        if self.hogwild_threads > limit:
            raise ValueError(f"--hogwild-threads {self.hogwild_threads} > the {limit} "
                             f"numba threads this process may use (NUMBA_NUM_THREADS)")

    def effective_optimizer(self) -> str:
        """The optimizer the algorithm runs (admm: sgd; eamsgd: nesterov; else --optimizer)."""
        return algorithm_class(self.algo).optimizer_name(self)


# ---- the command line ------------------------------------------------------------------

_RANK_ENV = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID")


def launcher_rank() -> int:
    """This process's rank as told by the launcher's environment (0 if unknown), so only
    one rank prints usage errors before MPI is initialised."""
    for name in _RANK_ENV:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


class _Parser(argparse.ArgumentParser):
    def _print_message(self, message, file=None):
        if launcher_rank() == 0:
            super()._print_message(message, file)


def _parse_bool_free(kinds):
    """argparse ``type`` for a knob of several kinds: ints stay ints, else the text."""
    def convert(text: str):
        if int in kinds and text.strip().lstrip("-").isdigit():
            return int(text)
        return text
    return convert


def _add_knob(group, k) -> None:
    names = [k.short, k.flag] if k.short else [k.flag]
    if bool in k.kinds:
        group.add_argument(*names, action="store_true", default=k.default, help=k.help)
        return
    kinds = [t for t in k.kinds if t is not type(None)]
    conv: Callable[[str], Any]
    if kinds == [int]:
        conv = int
    elif kinds == [float]:
        conv = float
    elif kinds == [str]:
        conv = str
    else:
        conv = _parse_bool_free(kinds)
    group.add_argument(*names, type=conv, default=k.default, help=k.help, metavar=k.metavar,
                       choices=k.choices)


def _algo_parts() -> list[type]:
    """The options of every registered algorithm, once each, in registry order."""
    seen: list[type] = []
    for name in algorithm_names():
        c = algorithm_class(name).Config
        if c is not None and c not in seen:
            seen.append(c)
    return seen


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mpidml.train`` parser, generated from the config parts' fields."""
    p = _Parser(
        prog="python -m mpidml.train",
        description=(
            "Distributed training on CPU clusters with MPI. Run under MPI, e.g. `mpirun -n 8 python -m "
            "mpidml.train`: each rank reads only its own rows of the HDF5 training set, computes gradients "
            "with numba kernels, and the ranks combine them by the chosen --algo (synchronous allreduce, "
            "local SGD, elastic averaging, gossip, push-sum, CHOCO, parameter server, ADMM, feature-parallel) "
            "over mpidml's own collectives. With no arguments it trains logistic regression on an embedded "
            "synthetic data set (200,000 x 100 float32, generated once into the cache directory)."),
        epilog=(
            "Data layout: an HDF5 file with dataset /X (n, d) float32/float64 and /y (n,) labels 0/1 (-1/+1 "
            "mapped), or a directory/glob of such shard files; see `python -m mpidml.data --help`. Exit "
            "status: 0 success; 1 a rank failed (all ranks aborted, message names the rank); 2 bad arguments "
            "or input (reported once by rank 0); 3 stopped by SIGTERM/SIGUSR1 after writing a checkpoint "
            "(resume with --resume); 4 the loss or gradient became NaN/inf."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    done: set[str] = set()
    for part in (*PARTS, *_algo_parts()):
        title = getattr(part, "GROUP", None) or f"algorithm options: {part.__name__.removesuffix('Config')}"
        group = p.add_argument_group(title)
        for k in knobs_of(part):
            if k.cli and k.name not in done:
                done.add(k.name)
                _add_knob(group, k)
    p.add_argument("--version", action="version", version=f"mpidml {__version__}")
    return p


def _all_knobs() -> dict[str, Knob]:
    out: dict[str, Knob] = {}
    for part in (*PARTS, *_algo_parts()):
        for k in knobs_of(part):
            out.setdefault(k.name, k)
    return out


def load_toml(path: str) -> dict:
    """The settings of TOML file ``path``, each checked against its field's type and
    choices; ``ValueError`` naming the file, the key, the value and what is expected."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    knobs = _all_knobs()
    values = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        k = knobs.get(dest)
        if k is None or not k.cli or dest == "config":
            raise ValueError(f"{path}: unknown setting {key!r}")
        values[dest] = check_value(k, value, path)
    return values


def parse_args(argv=None) -> argparse.Namespace:
    """Command line, with ``--config FILE.toml`` supplying defaults that flags override."""
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        try:
            parser.set_defaults(**load_toml(known.config))
        except ValueError as exc:
            parser.error(f"--config {exc}")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed arguments (unknown names are an error)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
