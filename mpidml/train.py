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
from .algos import ALGOS
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
    timeline: str | None = None
    save_model: str | None = None
    config: str | None = None
    inject_fault: str | None = None
    quiet: bool = False
    verbose: bool = False
    progress: str = "auto"
    progress_every: float = 10.0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0       # steps between checkpoints (0: only at the end / on a signal)
    checkpoint_keep: int = 3
    resume: bool = False
    stall_timeout: float = 300.0    # seconds without progress before the watchdog aborts (0: off)
    debug_collectives: bool = False  # check every collective's signature across ranks (comm/debug.py)
    memory_budget: str | int | None = None   # out-of-core: "512M" (CLI, >= 256M) or bytes (API)
    stream_in_memory: bool = False           # testing aid: the streamed row order, data in memory
    partition: str = "contiguous"            # row order per epoch: contiguous | shuffle | sample (data/batches.py)
    algo: str = "sync"
    tau: int = 8                    # local_sgd / easgd: steps between averages / centre meetings
    servers: int = 1                # ps: ranks holding parameter shards (the last ones)
    staleness: str = "inf"          # ps: 0 (BSP), s > 0 (SSP), inf (ASGD)
    dc_lambda: float = 0.0          # ps: DC-ASGD delay-compensation strength (0 = off)
    local_after: int = 0            # local_sgd: average every step for the first S steps (post-local SGD)
    easgd_alpha: float | None = None
    easgd_beta: float = 0.9
    topology: str = "ring"
    compress: str = "none"
    topk_ratio: float = 0.01
    qsgd_levels: int = 16
    choco_gamma: float = 0.5
    control_every: int = 8          # decentralized algorithms: steps between stop/NaN agreements
    admm_rho: float = 0.3           # admm: penalty rho of the consensus constraint (mean-loss units)
    hogwild_threads: int = 0        # local steps as lock-free Hogwild passes on T numba threads (0: off)
    threads: str | int = "auto"     # numba + BLAS threads per rank: auto (cores // ranks on the node) or N
    metrics_every: int = 0          # also write a metrics record every N steps (0: per epoch only)
    eval_every: int = 1             # full-data evaluation every N epochs and at the end (0: only at the end)

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
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be >= 0, got {self.eval_every}")
        from .runtime.threads import parse_threads
        parse_threads(self.threads)
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.lr_reference_batch < 0:
            raise ValueError("--weight-decay, --warmup-steps and --lr-reference-batch must be >= 0")
        if isinstance(self.memory_budget, str):
            from .data.stream import parse_memory_budget
            self.memory_budget = parse_memory_budget(self.memory_budget)
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f"--memory-budget must be positive, got {self.memory_budget}")
        from .data.batches import PARTITIONS
        if self.partition not in PARTITIONS:
            raise ValueError(f"--partition must be one of {', '.join(PARTITIONS)}, got {self.partition!r}")
        if self.partition != "contiguous" and self.memory_budget:
            raise ValueError(f"--partition {self.partition} reads each epoch's rows into memory; "
                             f"it cannot be combined with --memory-budget")
        if self.checkpoint_every < 0 or self.checkpoint_keep < 1:
            raise ValueError("--checkpoint-every must be >= 0 and --checkpoint-keep >= 1")
        if (self.resume or self.checkpoint_every) and not self.checkpoint_dir:
            raise ValueError("--resume and --checkpoint-every need --checkpoint-dir")
        if self.stall_timeout < 0:
            raise ValueError(f"--stall-timeout must be >= 0, got {self.stall_timeout}")
        if self.test and not self.data:
            raise ValueError("--test needs --data (the default data set brings its own test file)")
        from .comm.codecs import CODECS
        from .comm.topology import TOPOLOGIES

        if self.algo not in ALGOS:
            raise ValueError(f"--algo must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if self.tau < 1 or self.control_every < 1 or self.local_after < 0 or self.metrics_every < 0:
            raise ValueError("--tau and --control-every must be >= 1, --local-after and --metrics-every >= 0")
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"--topology must be one of {', '.join(TOPOLOGIES)}, got {self.topology!r}")
        if self.compress not in ("none", *CODECS):
            raise ValueError(f"--compress must be none or one of {', '.join(CODECS)}, got {self.compress!r}")
        if self.compress != "none" and self.algo not in ("sync", "choco"):
            raise ValueError(f"--compress works with --algo sync or choco, not {self.algo}")
        if self.algo == "choco" and self.compress == "fp16":
            raise ValueError("--algo choco needs --compress topk or qsgd")
        if not 0 < self.topk_ratio <= 1:
            raise ValueError(f"--topk-ratio must be in (0, 1], got {self.topk_ratio}")
        if not 1 <= self.qsgd_levels <= 127:
            raise ValueError(f"--qsgd-levels must be in 1..127, got {self.qsgd_levels}")
        if not 0 < self.choco_gamma <= 1:
            raise ValueError(f"--choco-gamma must be in (0, 1], got {self.choco_gamma}")
        if self.easgd_alpha is not None and not 0 <= self.easgd_alpha < 1:
            raise ValueError(f"--easgd-alpha must be in [0, 1), got {self.easgd_alpha}")
        if not 0 <= self.easgd_beta < 1:
            raise ValueError(f"--easgd-beta must be in [0, 1), got {self.easgd_beta}")
        from .algos.ps import parse_staleness
        parse_staleness(self.staleness)
        self.staleness = str(self.staleness)
        if self.servers < 1:
            raise ValueError(f"--servers must be >= 1, got {self.servers}")
        if self.dc_lambda < 0:
            raise ValueError(f"--dc-lambda must be >= 0, got {self.dc_lambda}")
        self.validate_model_parallel()
        if self.algo == "admm":        # local proximal steps are plain SGD (algos/admm.py says why)
            self.optimizer = "sgd"
        if self.algo == "eamsgd":      # EAMSGD = EASGD with Nesterov momentum on the local steps
            self.optimizer = "nesterov"

    def validate_model_parallel(self) -> None:
        """--algo admm / feature_parallel and --hogwild-threads: what they combine with."""
        from .algos.admm import ADMM_MODELS
        from .algos.hogwild import HOGWILD_ALGOS

        if self.algo == "admm" and self.model not in ADMM_MODELS:
            raise ValueError(f"--algo admm needs a convex --model ({', '.join(ADMM_MODELS)}), not {self.model}")
        if not self.admm_rho > 0:
            raise ValueError(f"--admm-rho must be > 0, got {self.admm_rho}")
        if self.algo == "feature_parallel" and self.model != "logreg":
            raise ValueError(f"--algo feature_parallel splits the columns of a linear model: it needs "
                             f"--model logreg, not {self.model}")
        if self.algo in ("admm", "feature_parallel") and (self.partition != "contiguous" or self.memory_budget):
            raise ValueError(f"--algo {self.algo} needs each rank's rows fixed and in memory: it cannot be "
                             f"combined with --partition {self.partition} or --memory-budget")
        if self.hogwild_threads < 0:
            raise ValueError(f"--hogwild-threads must be >= 0, got {self.hogwild_threads}")
        if self.hogwild_threads:
            import numba

            if self.algo not in HOGWILD_ALGOS:
                raise ValueError(f"--hogwild-threads is the local step of model-averaging algorithms: "
                                 f"use --algo {' or '.join(HOGWILD_ALGOS)}, not {self.algo}")
            if self.model != "logreg" or self.optimizer != "sgd" or self.memory_budget:
                raise ValueError("--hogwild-threads updates logistic-regression weights row by row with plain "
                                 "SGD: it needs --model logreg --optimizer sgd and no --memory-budget")
            if self.hogwild_threads > numba.config.NUMBA_NUM_THREADS:
                raise ValueError(f"--hogwild-threads {self.hogwild_threads} > the {numba.config.NUMBA_NUM_THREADS} "
                                 f"numba threads this process may use (NUMBA_NUM_THREADS)")

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
            "names the rank); 2 bad arguments or input (reported once by rank 0); 3 stopped by "
            "SIGTERM/SIGUSR1 after writing a checkpoint (resume with --resume); 4 the loss or "
            "gradient became NaN/inf."),
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
    g.add_argument("--partition", choices=["contiguous", "shuffle", "sample"], default=d.partition,
                   help="rows per rank and epoch: contiguous (a fixed balanced block, shuffled within "
                        "it each epoch); shuffle (a balanced block of a new global permutation every "
                        "epoch, read from disk each epoch); sample (n/p rows drawn with replacement "
                        "per rank and epoch, read from disk each epoch)")
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
    g = p.add_argument_group("algorithm (what the ranks exchange, with whom, when)")
    g.add_argument("--algo", default=d.algo,
                   choices=list(ALGOS),
                   help="sync: allreduce of gradients every step (BSP); local_sgd: average models every "
                        "--tau steps; easgd/eamsgd: elastic averaging with a centre model every --tau steps "
                        "(eamsgd: Nesterov momentum); easgd_async: each worker meets a centre rank (the last rank, no data) "
                        "every --tau of its own steps, nobody waits for a straggler; gossip: D-PSGD with neighbours on --topology; "
                        "pushsum: stochastic gradient push, one peer per step; choco: CHOCO-SGD, compressed "
                        "gossip; admm: consensus ADMM (convex models), local proximal steps and a z-update "
                        "every --tau steps (plain SGD local steps); feature_parallel: model parallelism for logreg, each rank holds a "
                        "column block of X and of the weights (1/p of the weights per rank); "
                        "ps: parameter server (--servers, --staleness, --dc-lambda). "
                        "See the README's guide to choosing")
    g.add_argument("--tau", type=int, default=d.tau,
                   help="local_sgd/easgd/admm: local steps between model averages / centre meetings / "
                        "z-updates")
    g.add_argument("--local-after", type=int, metavar="STEPS", default=d.local_after,
                   help="local_sgd: average every step for the first STEPS steps, then every --tau "
                        "(post-local SGD)")
    g.add_argument("--easgd-alpha", type=float, default=d.easgd_alpha,
                   help="easgd: elastic moving rate alpha (default --easgd-beta / p)")
    g.add_argument("--easgd-beta", type=float, default=d.easgd_beta, help="easgd: beta = p * alpha")
    g.add_argument("--topology", choices=["ring", "torus", "hypercube", "exponential"], default=d.topology,
                   help="gossip/choco: who talks to whom (Metropolis-Hastings mixing weights)")
    g.add_argument("--compress", choices=["none", "fp16", "topk", "qsgd"], default=d.compress,
                   help="sync: compress gradients (topk with error feedback; exchanged by allgather); "
                        "choco: the compressor of the gossiped differences (topk or qsgd)")
    g.add_argument("--topk-ratio", type=float, default=d.topk_ratio,
                   help="fraction of coordinates top-k sends")
    g.add_argument("--qsgd-levels", type=int, default=d.qsgd_levels, help="QSGD quantisation levels (1..127)")
    g.add_argument("--choco-gamma", type=float, default=d.choco_gamma, help="choco: consensus step size")
    g.add_argument("--servers", type=int, metavar="K", default=d.servers,
                   help="ps: the last K ranks are servers, each owning 1/K of the parameters (no data)")
    g.add_argument("--staleness", metavar="S", default=d.staleness,
                   help="ps: consistency model: 0 = BSP (equals sync), S > 0 = SSP (no worker more than S "
                        "clocks ahead of the slowest), inf = asynchronous SGD")
    g.add_argument("--dc-lambda", type=float, metavar="LAMBDA", default=d.dc_lambda,
                   help="ps: DC-ASGD delay compensation g + LAMBDA*g*g*(w_now - w_stale) on the servers (0 = off)")
    g.add_argument("--control-every", type=int, metavar="STEPS", default=d.control_every,
                   help="gossip/pushsum/choco/feature_parallel: steps between the 32-byte global agreements on "
                        "stop requests and NaN (the only global collective they make)")
    g.add_argument("--admm-rho", type=float, default=d.admm_rho,
                   help="admm: penalty rho of x_i = z, in units of the mean loss (local subproblem "
                        "L_i(x) + rho/2 |x - z + u_i|^2, solved by --tau minibatch steps)")
    g.add_argument("--threads", metavar="N|auto", default=d.threads,
                   help="numba and BLAS threads per rank; auto: $OMP_NUM_THREADS if set, else the "
                        "usable cores divided by the ranks on this node (at least 1), so ranks do "
                        "not oversubscribe the cores")
    g.add_argument("--hogwild-threads", type=int, metavar="T", default=d.hogwild_threads,
                   help="local_sgd/easgd/gossip with --model logreg --optimizer sgd on CSR data: each local "
                        "step is a lock-free Hogwild pass of per-row SGD over the minibatch on T numba "
                        "threads sharing one weight vector (0 = off: minibatch gradient steps)")
    g = p.add_argument_group("checkpoints and faults")
    g.add_argument("--checkpoint-dir", metavar="DIR", default=d.checkpoint_dir,
                   help="write checkpoints here (one HDF5 file each, atomic, last --checkpoint-keep "
                        "kept); also written at the end and when SIGTERM/SIGUSR1 arrives")
    g.add_argument("--checkpoint-every", type=int, metavar="STEPS", default=d.checkpoint_every,
                   help="steps between checkpoints (0: only at the end and on a signal)")
    g.add_argument("--checkpoint-keep", type=int, metavar="K", default=d.checkpoint_keep,
                   help="how many checkpoints to keep")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --checkpoint-dir (same rank "
                        "count: bit-for-bit; other counts: re-partitioned); none there: start fresh")
    g.add_argument("--stall-timeout", type=float, metavar="SEC", default=d.stall_timeout,
                   help="abort the job when a rank makes no progress for this long, naming where "
                        "each rank was (0 = off)")
    g.add_argument("--debug-collectives", action="store_true", default=d.debug_collectives,
                   help="before every collective, check on all ranks that they entered the same one "
                        "(name, size, dtype, op, root) and fail naming the first mismatch and where each "
                        "rank called from; costs one small allgather per collective "
                        "(also: MPIDML_DEBUG_COLLECTIVES=1)")
    g = p.add_argument_group("output and testing")
    g.add_argument("--metrics", metavar="FILE.jsonl", default=d.metrics,
                   help="write a JSON-lines log: header, one record per epoch, summary (rank 0)")
    g.add_argument("--eval-every", type=int, metavar="EPOCHS", default=d.eval_every,
                   help="evaluate the full training objective, gradient norm and test metric every EPOCHS "
                        "epochs and always after the last one (0: only after the last). Each evaluation "
                        "is one more pass over the training data: on large sets, evaluate less often")
    g.add_argument("--metrics-every", type=int, metavar="STEPS", default=d.metrics_every,
                   help="also write a {\"type\": \"step\"} metrics record every STEPS steps (0 = off)")
    g.add_argument("--save-model", metavar="FILE.h5", default=d.save_model,
                   help="save the trained model (parameters, model description, config, final metrics) "
                        "for python -m mpidml.evaluate / mpidml.predict")
    g.add_argument("--timeline", metavar="FILE.json", default=d.timeline,
                   help="write a Chrome-trace (Perfetto) timeline of every rank's compute / communicate / "
                        "evaluate / checkpoint phases")
    g.add_argument("--config", metavar="FILE.toml", default=d.config,
                   help="read flags from a TOML file (keys are flag names, e.g. batch-size = 512); "
                        "flags given on the command line override it")
    g.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines, only the summary")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also print every rank's rows, load time and host at start-up")
    g.add_argument("--progress", choices=["auto", "bar", "plain", "none"], default=d.progress,
                   help="progress inside an epoch on rank 0's stderr: a bar, plain lines every "
                        "--progress-every seconds (batch logs), or none; auto = bar on a terminal")
    g.add_argument("--progress-every", type=float, metavar="SEC", default=d.progress_every,
                   help="seconds between plain progress lines")
    g.add_argument("--inject-fault", metavar="SPEC", default=d.inject_fault,
                   help="testing aid, comma-separated: raise:RANK:STEP (exception), nan:RANK:STEP "
                        "(NaN gradient), sleep:RANK:STEP:SEC (straggler/stall), slow:RANK:SEC (sleep every step), ckpt-crash:K (rank 0 "
                        "dies while writing its K-th checkpoint)")
    g.add_argument("--version", action="version", version=f"mpidml {__version__}")
    return p


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()[:16]


def _warm_up_kernels(comm, model, X, y, log, hogwild: bool = False) -> float:
    """Compile (or load from numba's cache) the kernels: rank 0 first, so concurrent
    ranks do not race to write the cache; the others then load it. Returns seconds."""
    from .data.cache import polite_barrier

    def compile_once():
        if hasattr(model, "warm_up"):   # a collective model (feature_parallel): kernels alone
            return model.warm_up(X, y)
        rows = np.arange(min(2, X.shape[0]), dtype=np.int64)
        if hogwild:
            model.sgd_pass(X, y, rows, model.init_params(), 0.0)
        params = model.init_params()
        grad = np.empty_like(params)
        model.loss_grad_sum(X, y, rows, params, grad)
        if hasattr(model, "warm_up_parallel"):
            model.warm_up_parallel(X, y, rows, params, grad)
        model.metric_sum(X, y, rows, params)
        if hasattr(X, "indptr"):   # the parameter server's sparse pull (algos/ps.py)
            from .kernels._common import touched_columns
            touched_columns(X.indptr, X.indices, rows, np.zeros(X.shape[1], np.uint8), np.empty(X.shape[1], np.int64), 0)

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
    from .comm.collectives import Collectives
    from .data.cache import ensure_default_dataset
    from .checkpoint import Checkpointer
    from .data.batches import InMemoryRows, StreamedRows, loss_grad_pieces
    from .data.loader import load_shard_collective
    from .data.stream import open_stream_collective
    from .models import MODEL_CLASSES, make_model
    from .optim import lr_at, make_optimizer
    from .algos import AlgoContext, make_algorithm
    from .runtime.errors import MpidmlError, fail_together
    from .runtime.faults import parse_fault
    from .runtime.signals import EXIT_STOPPED, StopRequest
    from .runtime.watchdog import Watchdog
    from .progress import Progress
    from .timeline import Timeline

    t_start = time.perf_counter()
    rank, size = comm.Get_rank(), comm.Get_size()

    def check_config():
        cfg.validate()
        return parse_fault(cfg.inject_fault)

    fault = fail_together(comm, "checking the configuration", check_config)
    # ONE Collectives for the run: its counters, its debug mode, the measured allreduce policy
    coll = Collectives(comm, debug=True if cfg.debug_collectives else None)
    counters = coll.counters
    if cfg.data is None:
        cfg.data, cfg.test = ensure_default_dataset(comm, cfg.cache_dir, log=_Log(rank, False, None).always)
    log = fail_together(comm, "opening the metrics file", _Log, rank, cfg.quiet, cfg.metrics)

    label_mode = MODEL_CLASSES[cfg.model].label_mode  # binary | classes | real

    def check_loaded(shard, test):
        if test is not None and test.d != shard.d:
            raise MpidmlError(f"{cfg.test}: /X has {test.d} features but {cfg.data} has {shard.d}")

    t0 = time.perf_counter()
    stream = None
    part = None
    servers = {"easgd_async": 1, "ps": cfg.servers}.get(cfg.algo, 0)
    if servers:   # the last rank(s) hold the centre variable / parameter shards and no data
        workers = max(size - servers, 1)
        part = (workers, rank if rank < workers else -1)
    if cfg.algo == "feature_parallel":   # every row, this rank's column block
        from .algos.feature_parallel import load_blocks
        shard, test = load_blocks(comm, cfg, log=log.always)
    elif cfg.memory_budget and not cfg.stream_in_memory:
        stream = open_stream_collective(comm, cfg.data, cfg.memory_budget, label_mode, log=log.always,
                                        part=part)
        shard = stream.sample_shard()  # a few rows: schema, dtypes, kernel warm-up
    else:
        shard = load_shard_collective(comm, cfg.data, label_mode, log=log.always, part=part)
    if cfg.algo != "feature_parallel":
        test = load_shard_collective(comm, cfg.test, label_mode, log=log.always,
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
    elif cfg.partition != "contiguous":
        from .data.batches import EpochReadRows
        source = EpochReadRows(shard, size - servers, cfg.partition)   # re-reads its rows every epoch
    else:
        source = InMemoryRows(shard.X, shard.y)
    n_classes = _count_classes(comm, shard, test) if label_mode == "classes" else 2
    from .runtime.threads import limit_threads, parse_threads
    threads, threads_applied = limit_threads(comm, parse_threads(cfg.threads))
    if cfg.algo == "feature_parallel":
        from .algos.feature_parallel import BlockLogReg
        d = shard.dataset.d
        model = BlockLogReg(comm, d, shard.columns, dtype, cfg.l2)
    else:   # with several threads per rank, logreg takes its prange kernels for large calls
        model = make_model(cfg.model, d, n_classes, dtype, cfg.l2, cfg.hidden_sizes(),
                           parallel=threads_applied["numba"] > 1)
    if cfg.hogwild_threads:
        from .algos.hogwild import check_hogwild
        fail_together(comm, "checking --hogwild-threads", check_hogwild, cfg, shard)
    t_compile = _warm_up_kernels(comm, model, shard.X, shard.y, log.always, hogwild=bool(cfg.hogwild_threads))

    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    params = model.init_params(seed=cfg.seed)  # a pure function of the seed: same on all ranks
    opt = make_optimizer(cfg.optimizer, params, cfg.momentum, cfg.weight_decay)
    algo = fail_together(comm, "setting up --algo", make_algorithm, cfg.algo,
                         AlgoContext(comm, model, params, opt, cfg, rows=source.n, coll=coll))
    base_lr = cfg.base_lr()
    metric_key = f"test_{model.metric_name}"
    npar = model.nparams

    # Checkpoints hold the shared state (parameters or the consensus/centre model,
    # optimizer buffers), the per-rank state of the algorithm where ranks differ, and the
    # step; the data position follows from it, the per-epoch order being a pure function
    # of (seed, epoch, rank).
    model_desc = {"kind": cfg.model, "d": d, "dtype": str(dtype), "nparams": getattr(model, "nparams_full", npar),
                  "classes": n_classes, "hidden": cfg.hidden if cfg.model == "mlp" else "",
                  "optimizer": cfg.optimizer, "algo": cfg.algo}
    ckpt = None
    start_step = 0
    if cfg.checkpoint_dir:
        ckpt = Checkpointer(comm, cfg.checkpoint_dir, cfg.checkpoint_keep, model_desc,
                            {k: v for k, v in asdict(cfg).items() if k != "resume"}, fault)
        ckpt.check_writable()
        if cfg.resume:
            found = ckpt.resume(log.always)
            if found is None:
                log.always(f"resume: no checkpoint in {cfg.checkpoint_dir}; starting from step 0")
            else:
                algo.load_state(found.state, found.per_rank, found.meta.get("world_size") == size)
                start_step = int(found.meta["step"])
                if fault is not None:
                    fault.resume_at(start_step)
                was = found.meta.get("world_size")
                log.always(f"resume: {found.path} (step {start_step}, written by {was} rank(s))"
                           + ("" if was == size else f"; re-partitioned for {size} rank(s): the rest "
                              f"of the interrupted epoch uses the new ranks' row order"))

    def save_checkpoint(step_done: int) -> str | None:
        if ckpt is None:
            return None
        path = ckpt.save(step_done, {"epoch": step_done // steps_per_epoch,
                                     "step_in_epoch": step_done % steps_per_epoch},
                         algo.shared_state(), algo.rank_state())
        algo.control.hint = f"; last good checkpoint: {path}"
        return path
    evalbuf = np.zeros(npar + 5, dtype=np.float64)  # [grad | loss | count | metric | test count | test loss]
    scratch = np.zeros(npar, dtype=dtype)
    test_rows = np.arange(test.n if test else 0, dtype=np.int64)
    evalgrad = np.zeros(npar, dtype=dtype)

    header = {
        "type": "header", "version": __version__, "world_size": size,
        "hosts": sorted(set(comm.allgather(socket.gethostname()))),
        "python": platform.python_version(), "config": asdict(cfg),
        "n_train": n, "n_test": test.n_total if test else 0, "d": d, "dtype": str(dtype),
        "steps_per_epoch": steps_per_epoch, "model": cfg.model, "n_classes": n_classes,
        "threads": {**threads.as_dict(), "applied": threads_applied}, "nparams": model_desc["nparams"], "lr_scaled": base_lr, "algo": algo.describe(),
        # parameters + gradient + optimizer buffers this rank holds (max over ranks)
        "model_bytes_per_rank": max(comm.allgather(algo.params.nbytes + algo.grad.nbytes + sum(
            a.nbytes for a in algo.opt.state().values()))),
    }
    log.record(header)
    log.always(
        f"mpidml {__version__}: {size} rank(s), {_describe(cfg, n_classes)} on {cfg.data} ({n} x {d} {dtype}), "
        f"global batch {cfg.batch_size}, {steps_per_epoch} steps/epoch, lr {base_lr:g} {cfg.lr_schedule}, "
        f"{_describe_optimizer(cfg)}, l2 {cfg.l2}; {algo.describe()}")
    log.always(f"start-up: data load {t_load:.2f} s, kernel compile/load {t_compile:.2f} s; "
               f"{threads.describe()}")
    if cfg.verbose:
        ranks = comm.gather((shard.start, shard.start + shard.n, socket.gethostname(), t_load), root=0)
        if rank == 0:
            for r, (a, b, host, tl) in enumerate(ranks):
                log.always(f"  rank {r} on {host}: rows {a}..{b} ({b - a} rows), loaded in {tl:.2f} s")

    def evaluate():
        """Exact full-data objective and gradient norm; test accuracy (one allreduce), of
        the model the algorithm evaluates (replicas, their mean, or the centre)."""
        if model.rows_replicated:   # feature_parallel: every rank holds every row; margins summed
            objective, gnorm, acc, evaluate.test_loss = algo.evaluate(source, test, test_rows)
            return objective, gnorm, acc
        params = algo.consensus()
        evalbuf[:] = 0
        for X, y, rows in source.full():
            evalbuf[npar] += model.loss_grad_sum(X, y, rows, params, evalgrad)
            evalbuf[:npar] += evalgrad
        evalbuf[npar + 1] = source.n
        if test is not None:
            evalbuf[npar + 2] = model.metric_sum(test.X, test.y, test_rows, params)
            evalbuf[npar + 3] = test.n
            evalbuf[npar + 4] = model.loss_grad_sum(test.X, test.y, test_rows, params, evalgrad) if test.n else 0
        coll.allreduce(evalbuf)
        grad = evalbuf[:npar] / max(evalbuf[npar + 1], 1)
        model.add_regularizer_grad(params, grad)
        objective = evalbuf[npar] / max(evalbuf[npar + 1], 1) + model.regularizer(params)
        has_test = test is not None and evalbuf[npar + 3] > 0
        acc = model.finish_metric(evalbuf[npar + 2], evalbuf[npar + 3]) if has_test else None
        evaluate.test_loss = float(evalbuf[npar + 4] / evalbuf[npar + 3]) if has_test else None
        return float(objective), float(np.linalg.norm(grad)), acc

    with counters.uncounted():
        objective0, gnorm0, _ = evaluate()
    log.info(f"epoch {start_step // steps_per_epoch:>3}/{cfg.epochs}  objective {objective0:.6f}")
    counters.reset()
    train_time = 0.0
    step = start_step
    history = []
    stop = StopRequest()
    watchdog = Watchdog(cfg.stall_timeout, rank, size)
    timeline = Timeline(comm, enabled=bool(cfg.timeline))
    progress = Progress("none" if cfg.quiet else cfg.progress, rank, cfg.epochs, steps_per_epoch, n,
                        every=cfg.progress_every)

    def mark(phase: str, at_step: int) -> None:
        """Enter a phase: the watchdog's heartbeat and the timeline's event boundary."""
        watchdog.beat(phase, at_step)
        timeline.begin(phase, at_step)
    stopped_by = 0
    asynchronous, serves = algo.asynchronous, algo.serves
    if cfg.hogwild_threads:
        from .algos.hogwild import hogwild_step, start_hogwild
        start_hogwild(algo, cfg.hogwild_threads)
    for epoch in range(start_step // steps_per_epoch + 1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        phase_time = np.zeros(2)   # this rank's [compute, allreduce] seconds in this epoch
        if serves:    # easgd_async's centre / ps servers: answer the workers until the epoch is done
            mark("communicate", step)
            stopped_by = int(algo.serve_epoch(n, beat=lambda: watchdog.beat("communicate", step)))
            batches = ()
        elif asynchronous:   # each worker cycles through its rows until the centre ends the epoch
            batches = _cycle(source, steps_per_epoch, cfg.seed, epoch, rank)
        else:   # feature_parallel: the same rows on every rank (rank 0's order)
            batches = source.epoch(steps_per_epoch, cfg.seed, epoch, 0 if model.rows_replicated else rank)
        progress.start_epoch(epoch, max(0, start_step - (epoch - 1) * steps_per_epoch))
        for s_in_epoch, pieces in enumerate(batches):
            if (epoch - 1) * steps_per_epoch + s_in_epoch < start_step:
                continue   # resumed mid-epoch: skip the steps already taken (same row order)
            if asynchronous:   # a parameter server fetches what the batch reads, or ends the epoch
                mark("communicate", step)
                t_comm = time.perf_counter()
                ahead = algo.before_batch(pieces)
                phase_time[1] += time.perf_counter() - t_comm
                if ahead is not None:
                    stopped_by = int(ahead.stop)
                    break
            t_compute = time.perf_counter()
            mark("compute", step)
            if fault is not None:
                fault.check(rank, step)
            lr = lr_at(step, total_steps, base_lr, cfg.lr_schedule, cfg.warmup_steps,
                       cfg.lr_decay_every, cfg.lr_gamma)
            if cfg.hogwild_threads:   # the local step itself, applied row by row (algos/hogwild.py)
                loss = hogwild_step(model, pieces, params, lr, algo.grad)
            else:
                loss = loss_grad_pieces(model, pieces, params, algo.grad, scratch)
            count = sum(len(rows) for _, _, rows in pieces)
            if fault is not None:
                fault.corrupt_grad(rank, step, algo.grad)
            mark("communicate", step)
            t_comm = time.perf_counter()
            out = algo.step(step, loss, count, lr, stop.requested)
            phase_time[1] += time.perf_counter() - t_comm
            phase_time[0] += t_comm - t_compute
            if out is not None:
                if s_in_epoch < steps_per_epoch:
                    progress.update(s_in_epoch, out.loss, out.count)
                stopped_by = int(out.stop)
                if out.end_epoch:
                    break
            step += 1
            if cfg.metrics_every and step % cfg.metrics_every == 0:
                log.record({"type": "step", "epoch": epoch, "step": step,
                            "samples": step * n // steps_per_epoch,
                            "train_seconds": train_time + time.perf_counter() - t_epoch,
                            "train_loss": out.loss / out.count if out is not None and out.count else None,
                            "learning_rate": lr, "bytes_sent_received": counters.total})
            if stopped_by:                 # some rank got SIGTERM/SIGUSR1: all stop here
                break
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps and not asynchronous:
                mark("checkpoint", step)
                save_checkpoint(step)
        batches = pieces = None  # out-of-core: do not pin the last chunk during evaluation
        if asynchronous:   # NaN verdict, centre to every rank; the epoch's nominal step count
            algo.finish_epoch()
            step = epoch * steps_per_epoch
            if cfg.checkpoint_every and step < total_steps and not stopped_by:
                mark("checkpoint", step)
                save_checkpoint(step)
        progress.end_epoch()
        elapsed = time.perf_counter() - t_epoch
        train_time += elapsed
        evaluated = bool(epoch == cfg.epochs or stopped_by or (cfg.eval_every and epoch % cfg.eval_every == 0))
        objective = gnorm = acc = spread = evaluate.test_loss = None
        if evaluated:   # (NaN in the loss or gradient is caught at every control point regardless)
            mark("evaluate", step)
            with counters.uncounted():   # bytes count training traffic only
                objective, gnorm, acc = evaluate()
                spread = algo.disagreement()
        timeline.end()
        if evaluated and not math.isfinite(objective):
            raise MpidmlError(f"objective became {objective} at epoch {epoch} (step {step}); "
                              f"lower --lr (now {cfg.lr})")
        # Allreduce time = transfer + waiting for the slowest rank. The rank that arrives
        # last waits least, so the minimum over ranks estimates the transfer itself.
        times = np.array(comm.allgather(phase_time))
        transfer = float(times[:, 1].min())
        rec = {"type": "epoch", "epoch": epoch, "step": step, "samples": epoch * n,
               "train_seconds": train_time, "objective": objective, "grad_norm": gnorm,
               metric_key: acc, "test_loss": evaluate.test_loss,
               "learning_rate": lr_at(step - 1, total_steps, base_lr, cfg.lr_schedule, cfg.warmup_steps,
                                      cfg.lr_decay_every, cfg.lr_gamma),
               "samples_per_second": n / elapsed,
               "bytes_communicated": max(comm.allgather(counters.total)),
               "compute_seconds": float(times[:, 0].max()), "communication_seconds": transfer,
               "wait_seconds": float((times[:, 1] - transfer).max()),
               "disagreement": spread}
        history.append(rec)
        log.record(rec)
        acc_s = f"  {metric_key} {acc:.4f}" if acc is not None else ""
        obj_s = f"objective {objective:.6f}{acc_s}" if evaluated else "(not evaluated: --eval-every)"
        log.info(f"epoch {epoch:>3}/{cfg.epochs}  {obj_s}  samples/s {n / elapsed:,.0f}  ({elapsed:.2f} s)")
        if stopped_by:
            break
    watchdog.stop()
    stop.restore()
    if cfg.timeline:
        fail_together(comm, f"writing the timeline {cfg.timeline}", timeline.write, cfg.timeline)
    final_ckpt = save_checkpoint(step) if ckpt is not None else None
    if stopped_by:
        log.always(f"stopped by a signal at step {step}; "
                   + (f"checkpoint {final_ckpt}; continue with --resume" if final_ckpt
                      else "no --checkpoint-dir: nothing saved"))
        log.close()
        raise SystemExit(EXIT_STOPPED)
    if not history:   # resumed from a finished run: nothing left to do
        with counters.uncounted():
            objective, gnorm, acc = evaluate()
        history.append({"objective": objective, "grad_norm": gnorm, metric_key: acc})

    with counters.uncounted():
        final = algo.consensus()      # the model evaluated and saved (the replicas themselves for sync)
    digests = comm.allgather(_digest(final))
    byte_counts = comm.allgather(counters.total)
    summary = {
        "type": "summary", "epochs": cfg.epochs, "steps": step, "world_size": size,
        "objective_initial": objective0, "objective": history[-1]["objective"],
        "grad_norm": history[-1]["grad_norm"], metric_key: history[-1][metric_key],
        "train_seconds": train_time, "startup_seconds": t_load + t_compile,
        "compile_seconds": t_compile, "load_seconds": t_load,
        "wall_seconds": time.perf_counter() - t_start,
        "samples_per_second": n * (step - start_step) / steps_per_epoch / train_time if train_time else None,
        "bytes_communicated": max(byte_counts),
        "params_identical": len(set(digests)) == 1, "params_digest": digests[0],
        "checkpoint": final_ckpt, "resumed_from_step": start_step,
    }
    extra = algo.report()
    if extra:
        summary.update(extra)
        log.info("  " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    summary["allreduce_calls"] = dict(coll.calls)   # algorithm -> calls (training and evaluation)
    if coll.debug.on:
        summary["collectives_checked"] = coll.debug.total()
        log.info(f"collective debug mode: {coll.debug.total()} collectives checked on rank 0, all ranks matched")
    if cfg.save_model:
        from .saved import save_model

        def write_model():
            if rank == 0:
                save_model(cfg.save_model, model_desc, final, asdict(cfg),
                           {k: v for k, v in summary.items() if k != "type"})
        fail_together(comm, f"saving the model to {cfg.save_model}", write_model)
    log.record(summary)
    log.close()
    if stream is not None:
        stream.close()
    acc = summary[metric_key]
    log.always(
        f"done: {cfg.epochs} epochs, {step} steps in {train_time:.2f} s training "
        f"(+ {summary['startup_seconds']:.2f} s start-up); objective {objective0:.6f} -> "
        f"{summary['objective']:.6f}" + (f", {metric_key.replace('_', ' ')} {acc:.4f}" if acc is not None else "")
        + f"; {summary['bytes_communicated'] / 1e6:.1f} MB sent+received per rank; "
        + (f"replicas identical: {'yes' if summary['params_identical'] else 'NO'}" if algo.replicated else
           f"evaluated {algo.consensus_kind}"))
    summary["params"] = final.copy()
    coll.release()
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    """Command line, with ``--config FILE.toml`` supplying defaults that flags override."""
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        import tomllib

        try:
            with open(known.config, "rb") as fh:
                table = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            parser.error(f"--config {known.config}: {exc}")
        dests = {a.dest for a in parser._actions}
        values = {}
        for key, value in table.items():
            dest = key.replace("-", "_")
            if dest not in dests or dest in ("help", "version", "config"):
                parser.error(f"--config {known.config}: unknown setting {key!r}")
            values[dest] = value
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def _cycle(source, steps: int, seed: int, epoch: int, rank: int):
    """Endless steps for asynchronous workers: this epoch's order, then fresh orders."""
    k = 0
    while True:
        yield from source.epoch(steps, seed, epoch + 100_000 * k, rank)
        k += 1


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
    args = parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items()})
    from .runtime.errors import EXIT_USAGE, MpidmlError, install_abort_hook

    install_abort_hook()
    from mpi4py import MPI

    from .doctor import check_world

    try:
        check_world(MPI.COMM_WORLD)
    except MpidmlError as exc:
        # Each of srun --mpi=none's tasks is alone in its world: the first task speaks.
        if os.environ.get("SLURM_PROCID", "0") == "0":
            sys.stderr.write(f"mpidml: error: {exc}\n")
        return EXIT_USAGE
    comm = MPI.COMM_WORLD.Dup()  # own communicator: our tags never meet the user's
    train(cfg, comm)
    comm.Free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
