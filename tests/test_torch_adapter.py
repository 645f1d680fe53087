"""mpidml.adapters.torch (issue 17): a PyTorch module as an mpidml.Model over one flat
buffer. Serial checks of the loss/gradient against mpidml's own MLP kernel and of the
zero-copy views; under mpiexec at p = 2 a torch MLP trained by sync, local SGD, gossip and
EASGD reaches the objective of mpidml's MLP from the same start, replicas identical for
sync. Skipped when torch is not installed (pip install -e '.[torch]')."""

import json
import os
import sys

import numpy as np
import pytest

from mpirun import HERE, run, run_mpi

ROOT = os.path.dirname(HERE)


def test_mpidml_imports_no_torch():
    code = ("import sys, mpidml, mpidml.api, mpidml.models, mpidml.engine.trainer, mpidml.adapters.torch\n"
            "print('TORCH', 'torch' in sys.modules)")
    res = run([sys.executable, "-c", code], timeout=60, cwd=ROOT)
    assert res.returncode == 0 and "TORCH False" in res.stdout, res.output


torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")


def _pair(rng, d=7, K=4, hidden=(5,), l2=1e-2):
    from mpidml import MLP
    from mpidml.adapters.torch import TorchModel

    ref = MLP(d, K, hidden, dtype=np.float32, l2=l2)
    flat = ref.init_params(seed=3)
    sizes = [d, *hidden, K]
    layers, off, perm = [], 0, []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(flat[off:off + a * b].reshape(a, b).T.copy()))
            lin.bias.copy_(torch.from_numpy(flat[off + a * b:off + a * b + b]))
        # torch's flat index of each mpidml parameter: W (out, in) row-major, then b
        perm += [off + i * b + o for o in range(b) for i in range(a)] + list(range(off + a * b, off + a * b + b))
        off += a * b + b
        layers += [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    model = TorchModel(net, torch.nn.CrossEntropyLoss(), l2=l2, reset=False)   # mean: scaled to the sum
    return ref, flat, model, np.array(perm)


def test_loss_and_gradient_equal_mpidml_mlp():
    rng = np.random.default_rng(0)
    ref, flat, model, perm = _pair(rng)
    X = rng.standard_normal((50, 7)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    rows = rng.permutation(50)[:31].astype(np.int64)
    g_ref = np.empty_like(flat)
    loss_ref = ref.loss_grad_sum(X, y, rows, flat, g_ref)
    p = model.init_params()                    # reset=False: the module's own parameters
    assert np.allclose(p, flat[perm])
    g = np.full_like(p, np.nan)
    loss = model.loss_grad_sum(X, y, rows, p, g)
    assert abs(loss - loss_ref) < 1e-4 * abs(loss_ref)
    assert np.allclose(g, g_ref[perm], rtol=1e-4, atol=1e-5)
    assert model.metric_sum(X, y, rows, p) == ref.metric_sum(X, y, rows, flat)
    assert abs(model.regularizer(p) - ref.regularizer(flat)) < 1e-6
    # zero copy: the module's parameters and gradients are views of the engine's buffers
    first = next(model.module.parameters())
    assert first.data_ptr() == p.ctypes.data and first.grad.data_ptr() == g.ctypes.data
    p[0] += 1.0
    assert float(first.detach().reshape(-1)[0]) == p[0]
    # another buffer (e.g. the evaluator's) re-points the views; the first stays intact
    q = p.copy()
    q[0] -= 1.0
    g2 = np.empty_like(g)
    model.loss_grad_sum(X, y, rows, q, g2)
    assert np.allclose(g2, g_ref[perm], rtol=1e-4, atol=1e-5) and first.data_ptr() == q.ctypes.data
    assert (model.predict(X, q).argmax(1)[rows] == y[rows]).sum() == model.metric_sum(X, y, rows, q)


def test_reset_is_a_pure_function_of_the_seed_and_leaves_old_buffers():
    from mpidml.adapters.torch import TorchModel

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    model = TorchModel(net, torch.nn.BCEWithLogitsLoss(reduction="sum"), label_mode="binary")
    a, b, c = model.init_params(1), model.init_params(1), model.init_params(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert model.nparams == 4 * 3 + 3 + 3 + 1 and [s.stop - s.start for s in model._weight_slices] == [12, 3]
    with pytest.raises(ValueError, match="label_mode must be one of"):
        TorchModel(net, torch.nn.MSELoss(), label_mode="counts")
    from mpidml.data.layout import CSRMatrix
    csr = CSRMatrix(np.ones(2, np.float32), np.array([0, 1], np.int32), np.array([0, 1, 2], np.int64), (2, 4))
    with pytest.raises(TypeError, match="dense /X"):
        model.loss_grad_sum(csr, np.zeros(2), np.arange(2), a, np.empty_like(a))


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    from mpidml.data.writer import write_dense

    rng = np.random.default_rng(8)
    n, d, K = 1200, 12, 3
    centres = rng.standard_normal((K, d)) * 1.2
    y = rng.integers(0, K, n)
    X = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    path = str(tmp_path_factory.mktemp("torch") / "classes.h5")
    write_dense(path, X, y.astype(np.int32))
    return path


def test_torch_mlp_trains_like_mpidml_mlp_at_p2(classes):
    res = run_mpi(2, [os.path.join(HERE, "mpi_progs", "torch_cases.py"), classes], timeout=300)
    assert res.returncode == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == {"sync", "local_sgd", "gossip", "easgd"}
    for algo, r in out.items():
        assert r["torch"] < r["initial"] - 0.5, (algo, r)            # it trained
        # same start, same data order, same optimiser: float32 rounding apart (seen: ~1e-8)
        assert abs(r["torch"] - r["mpidml"]) <= 1e-5, (algo, r)
        assert r["grad_zero_copy"], algo
    assert out["sync"]["identical_torch"] and out["sync"]["identical_mpidml"]
    assert out["local_sgd"]["identical_torch"]      # its consensus is the averaged model


def test_torch_model_through_the_cli_with_checkpoints(classes, tmp_path):
    metrics = tmp_path / "m.jsonl"
    env = {"PYTHONPATH": os.pathsep.join([os.path.join(HERE, "plugins"), os.environ.get("PYTHONPATH", "")])}
    args = ["-m", "mpidml.train", "--data", classes, "--model", "torch_mlp:TorchMLP", "--algo", "sync",
            "--epochs", "3", "--batch-size", "64", "--lr", "0.1", "--metrics", str(metrics),
            "--checkpoint-dir", str(tmp_path / "ck"), "-q"]
    res = run_mpi(2, args, timeout=180, env=env)
    assert res.returncode == 0, res.output
    assert "torch_mlp:TorchMLP" in res.stdout
    summary = [json.loads(line) for line in open(metrics)][-1]
    assert summary["params_identical"] and summary["objective"] < summary["objective_initial"] - 0.5, summary
    assert os.listdir(tmp_path / "ck")
    again = run_mpi(2, args[:-1] + ["--epochs", "4", "--resume", "--resume-with-changes", "-q"], timeout=180, env=env)
    assert again.returncode == 0 and "resume:" in again.output, again.output
