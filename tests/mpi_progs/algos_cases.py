"""Properties of the training algorithms (mpidml.algos), many cases in one launch.
Rank 0 prints one JSON line: {"p": p, "results": [{"case", "ok", "detail"}]}.

Algorithms run on a small logistic-regression problem (uneven shards: n = 103) with
the real model and optimizer objects, driven by the same per-step protocol as train.py.
"""

import json
import math

import numpy as np
from mpi4py import MPI
from report import Report  # tests/mpi_progs/report.py

from mpidml.algos import AlgoContext, make_algorithm
from mpidml.comm import topology as topo
from mpidml.comm.gossip import gossip_round
from mpidml.data.partition import shard_rows
from mpidml.models import make_model
from mpidml.optim import make_optimizer
from mpidml.train import TrainConfig

comm = MPI.COMM_WORLD.Dup()
p, rank = comm.Get_size(), comm.Get_rank()
report = Report(comm)
results, record = report.results, report.record


N, D = 103, 7
rng = np.random.default_rng(11)
X_all = rng.standard_normal((N, D))
y_all = (X_all @ rng.standard_normal(D) + 0.3 * rng.standard_normal(N) > 0).astype(np.float64)
lo, hi = shard_rows(N, p, rank)
X, y = X_all[lo:hi], y_all[lo:hi]


def run(algo_name, steps=40, batch=24, lr=0.2, optimizer="sgd", **cfg_kw):
    """Train with ``algo_name``; returns (algorithm, per-step local param snapshots)."""
    cfg = TrainConfig(algo=algo_name, optimizer=optimizer, l2=1e-3, **cfg_kw)
    model = make_model("logreg", D, 2, np.dtype(np.float64), cfg.l2, ())
    params = model.init_params(seed=0)
    params += 0.1                       # away from 0: every algorithm has something to do
    opt = make_optimizer(optimizer, params, 0.9)
    algo = make_algorithm(algo_name, AlgoContext(comm, model, params, opt, cfg))
    local_batch = shard_rows(batch, p, rank)
    for t in range(steps):
        # rank r takes its share of a global batch, cycling through its own rows
        k = local_batch[1] - local_batch[0]
        rows = (np.arange(k, dtype=np.int64) + t * k) % max(len(y), 1) if len(y) else np.zeros(0, np.int64)
        loss = model.loss_grad_sum(X, y, rows, params, algo.grad) if len(rows) else 0.0
        if not len(rows):
            algo.grad[:] = 0
        algo.step(t, loss, float(len(rows)), lr, False)
    return algo


# 1. local SGD with tau = 1 is sync SGD (sample-weighted averaging), to rounding
a_sync = run("sync")
sync_params = a_sync.consensus().copy()
a_local = run("local_sgd", tau=1)
diff = float(np.max(np.abs(a_local.consensus() - sync_params)))
record("local_sgd_tau1_equals_sync", diff < 1e-12, diff)
a_post = run("local_sgd", tau=1000, local_after=40)     # post-local with all steps in the sync phase
record("post_local_warm_phase_equals_sync", np.max(np.abs(a_post.consensus() - sync_params)) < 1e-12)

# 2. EASGD with alpha = 0: every worker is exactly a lone SGD run on its own rows; centre stays put
a_e0 = run("easgd", tau=2, easgd_alpha=0.0)
cfg1 = TrainConfig(algo="sync", optimizer="sgd", l2=1e-3)
solo = MPI.COMM_SELF.Dup()
model = make_model("logreg", D, 2, np.dtype(np.float64), 1e-3, ())
params = model.init_params(seed=0) + 0.1
opt = make_optimizer("sgd", params, 0.9)
alone = make_algorithm("local_sgd", AlgoContext(solo, model, params, opt, TrainConfig(algo="local_sgd", tau=10**6)))
k = shard_rows(24, p, rank)[1] - shard_rows(24, p, rank)[0]
for t in range(40):
    rows = (np.arange(k, dtype=np.int64) + t * k) % max(len(y), 1) if len(y) else np.zeros(0, np.int64)
    loss = model.loss_grad_sum(X, y, rows, params, alone.grad) if len(rows) else 0.0
    alone.step(t, loss, float(len(rows)), 0.2, False)
init = model.init_params(seed=0) + 0.1
record("easgd_alpha0_workers_independent", np.array_equal(a_e0.params, params), np.max(np.abs(a_e0.params - params)))
record("easgd_alpha0_centre_unchanged", np.array_equal(a_e0.center, init))

# 3. EASGD with alpha > 0 pulls workers together: final spread below the alpha = 0 spread
a_e = run("easgd", tau=2)
spread0 = a_e0.disagreement()
spread = a_e.disagreement()
record("easgd_elastic_force_reduces_spread", p == 1 or spread < 0.5 * spread0, (spread, spread0))
# the centre is identical on every rank
record("easgd_centre_identical", len(set(comm.allgather(a_e.center.tobytes()))) == 1)

# 4. gossip averaging without gradients contracts at the consensus rate
for name in ["ring"] + (["hypercube"] if p & (p - 1) == 0 else []):
    g = topo.build(name, p)
    W = topo.metropolis_hastings(g)
    rate = topo.consensus_rate(W)
    x = np.random.default_rng(rank + 100).standard_normal(5000)
    scratch = [np.empty_like(x) for _ in g[rank]]
    dis = []
    for _ in range(31):
        mean = x.copy()
        if p > 1:
            from mpidml.comm.ring import ring_allreduce
            ring_allreduce(comm, mean, "avg")
        dis.append(math.sqrt(comm.allreduce(float(np.sum((x - mean) ** 2)))))
        gossip_round(comm, x, W, g[rank], scratch)
    if p == 1:
        ok, measured = dis[0] == 0 and dis[1] == 0, 0.0
    elif rate < 1e-9:    # complete graph: one round averages exactly
        ok = dis[1] < 1e-9 * dis[0]
        measured = dis[1] / dis[0]
    else:
        # per-round contraction over the last 10 rounds above the rounding floor
        last = max(i for i, v in enumerate(dis) if v > 1e-9 * dis[0])
        measured = (dis[last] / dis[last - 10]) ** 0.1
        ok = abs(measured - rate) <= 0.02 * rate and all(
            b <= a * (rate + 1e-6) for a, b in zip(dis[:last + 1], dis[1:last + 1]))
    record(f"gossip_rate_{name}", ok, f"measured {measured:.4f} predicted {rate:.4f}")

# 5. push-sum reaches the exact average in log2 p rounds (p a power of two)
if p & (p - 1) == 0:
    cfg = TrainConfig(algo="pushsum")
    model = make_model("logreg", D, 2, np.dtype(np.float64), 0.0, ())
    params = np.random.default_rng(rank + 7).standard_normal(model.nparams)
    truth = np.array(comm.allgather(params.copy())).mean(0)
    ps = make_algorithm("pushsum", AlgoContext(comm, model, params, make_optimizer("sgd", params), cfg))
    rounds = int(math.log2(p))
    for _ in range(rounds):
        ps.mix()
    err = float(np.max(np.abs(ps.params - truth)))
    record("pushsum_exact_in_log2p_rounds", err < 1e-12 and abs(ps.w - 1) < 1e-15, f"{rounds} rounds, err {err:.2e}")

# 6. compressed / decentralized variants train: objective decreases, bytes counted, consensus identical
def objective(params):
    s = np.zeros(2)
    everything = np.arange(len(y), dtype=np.int64)
    s[0] = model_full.loss_grad_sum(X, y, everything, params, np.empty_like(params)) if len(y) else 0
    s[1] = len(y)
    tot = np.array(comm.allreduce(s))
    return tot[0] / tot[1]


model_full = make_model("logreg", D, 2, np.dtype(np.float64), 1e-3, ())
f_init = objective(model_full.init_params(seed=0) + 0.1)
f_sync = objective(sync_params)
for name, kw in [("gossip", {}), ("gossip", {"topology": "exponential"}), ("pushsum", {}),
                 ("choco", {"compress": "topk", "topk_ratio": 0.5, "choco_gamma": 0.5}),
                 ("choco", {"compress": "qsgd", "choco_gamma": 0.5}),
                 ("sync", {"compress": "topk", "topk_ratio": 0.3}), ("sync", {"compress": "qsgd"}),
                 ("sync", {"compress": "fp16"}), ("easgd", {"tau": 4}), ("eamsgd", {"tau": 4, "optimizer": "nesterov"}),
                 ("local_sgd", {"tau": 8})]:
    a = run(name, steps=120, **kw)
    nbytes = a.coll.counters.total      # the algorithm's own Collectives counted its traffic
    f = objective(a.consensus())
    same = len(set(comm.allgather(a.consensus().tobytes()))) == 1
    label = name + "".join(f"_{k}={v}" for k, v in kw.items())
    ok = f < f_init - 0.5 * (f_init - f_sync) and same and (p == 1 or nbytes > 0)
    record(f"trains_{label}", ok, f"f {f:.5f} (init {f_init:.5f}, sync-40 {f_sync:.5f}), bytes {nbytes}")

# 7. checkpoint state round trip: same rank count restores exactly, another count gets the mean
a = run("gossip", steps=10)
shared, mine = a.shared_state(), a.rank_state()
per_rank = comm.allgather({k: np.array(v) for k, v in mine.items()})
b = run("gossip", steps=0)
b.load_state(shared, per_rank, True)
record("state_roundtrip_same_size", np.array_equal(b.params, a.params))
c = run("gossip", steps=0)
c.load_state(shared, per_rank[:1], False)
record("state_elastic_takes_consensus", np.array_equal(c.params, shared["params"]))

if rank == 0:
    print(json.dumps({"p": p, "results": results}))
